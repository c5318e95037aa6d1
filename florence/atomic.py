"""Files written so that a crash never leaves a truncated one: to a temporary name in the same folder,
synced, then renamed over the target (checkpoints, ``last_checkpoint``, the data engine's shards)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_bytes", "write_text"]


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: the previous file (or none) until the new one is complete.
    The temporary file is ``.NAME.XXXX.tmp`` beside it, removed if the write fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))

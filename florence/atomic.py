"""Files written so that a crash never leaves a truncated one: to a temporary name in the same folder,
synced, then renamed over the target (checkpoints, ``last_checkpoint``, the data engine's shards)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["open_atomic", "write_bytes", "write_text"]


@contextlib.contextmanager
def open_atomic(path):
    """A binary file to write ``path`` through, atomically: the previous file (or none) stays until the
    block ends without an error. The temporary file is ``.NAME.XXXX.tmp`` beside it, removed if the
    write fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`open_atomic`)."""
    with open_atomic(path) as f:
        f.write(data)


def write_text(path, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))

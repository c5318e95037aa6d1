"""Files and folders written so that a crash never leaves a truncated one: to a temporary name in the
same folder, synced, then renamed over the target (checkpoints, ``last_checkpoint``, the data engine's
shards, exported model folders)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["open_atomic", "write_bytes", "write_text", "folder_atomic"]


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


@contextlib.contextmanager
def folder_atomic(path):
    """A folder to write ``path``'s files into, atomically: ``path`` appears, complete, when the block
    ends without an error (its files synced), and not before; a previous ``path`` stays until then and
    is replaced only if it holds nothing the new one does not (an earlier write of the same kind): a
    folder with other files is never deleted (FileExistsError names them). The work folder is
    ``.NAME.tmp`` beside it, emptied first (what a killed writer left) and removed if the block fails;
    one writer per ``path`` at a time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.parent / f".{path.name}.tmp", path.parent / f".{path.name}.old.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if old.exists() and not path.exists():  # a writer killed between its two renames: the previous folder
        os.rename(old, path)
    shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if path.exists():
            others = _files(path) - _files(tmp)
            if others:
                raise FileExistsError(f"{path} holds files that the new {path.name} would not: "
                                      f"{', '.join(sorted(others)[:5])}; write into a new or empty folder")
            # kept until the new folder is in place; a kill between the renames
            os.rename(path, old)  # leaves no ``path``: the writer is run again
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}

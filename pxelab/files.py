"""Atomic file writes: a hidden temporary file beside the target, fsync, rename, fsync the directory.

A reader sees the old file or the new one, never a part; a crash leaves at most a hidden `.name.*`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _temporary(path: Path) -> tuple[int, Path]:
    """A new hidden file in path's directory (hidden: never served, never read as a host file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return fd, Path(tmp)


def _sync_dir(directory: Path) -> None:
    """Make a rename in directory durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_with(tmp: Path, path: Path) -> None:
    """Rename a finished file over path and make the rename durable."""
    os.replace(tmp, path)
    _sync_dir(path.parent)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write path (text as UTF-8) so that it is whole or untouched; OSError when it cannot be."""
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        replace_with(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_atomic(src: Path, dst: Path) -> int:
    """Copy src to dst so that dst is whole or untouched; returns the size."""
    fd, tmp = _temporary(dst)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)  # sendfile where the kernel has it
        with tmp.open("rb+") as out:
            os.fsync(out.fileno())
        replace_with(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst.stat().st_size

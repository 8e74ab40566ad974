"""Atomic file writes: a hidden temporary file beside the target, fsync, rename, fsync the directory.

A reader sees the old file or the new one, never a part; a crash leaves at most a hidden `.name.*`.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path


def _temporary(path: Path, mode: int) -> tuple[int, Path]:
    """A new hidden file beside path (hidden: never served, never read as a host file), created
    with `mode` less the umask, as `open` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), tmp
        except FileExistsError:
            continue


def _sync_dir(directory: Path) -> None:
    """Make a rename in directory durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_durably(tmp: Path, path: Path) -> None:
    """Rename a finished file over path and make the rename durable."""
    os.replace(tmp, path)
    _sync_dir(path.parent)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o666) -> None:
    """Write path (text as UTF-8) so that it is whole or untouched; OSError when it cannot be.

    The file gets `mode` less the umask (pass 0o600 for a secret)."""
    fd, tmp = _temporary(path, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        _replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_atomic(src: Path, dst: Path) -> int:
    """Copy src to dst so that dst is whole or untouched; returns the size."""
    fd, tmp = _temporary(dst, 0o666)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)  # sendfile where the kernel has it
        with tmp.open("rb+") as out:
            os.fsync(out.fileno())
        _replace_durably(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst.stat().st_size

"""A directory of `*.json` files kept in step with the disk: re-read what changed (by stamp),
add what is new, drop what is gone. Shared by the host inventory and the profiles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from pxelab.errors import HostFileError

T = TypeVar("T")

UNREAD = (0, 0, 0)
"""A stamp no file has: the next scan re-reads a file that carries it."""


@dataclass
class Loaded(Generic[T]):
    """One file of the directory as last read."""

    stamp: tuple[int, int, int]
    """Its mtime (ns), size and inode when read."""
    value: T | None
    """What it loaded to; None when it could not be loaded."""
    error: str | None
    """Why it could not be loaded (or was rejected after), else None."""


def json_files_in(directory: Path) -> list[Path]:
    """The `*.json` files a directory holds, hidden ones left out, in the order they are read."""
    return sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))


def rescan(
    directory: Path,
    files: Mapping[Path, Loaded[T]],
    load: Callable[[Path], T],
    log: logging.Logger,
    what: str,
) -> dict[Path, Loaded[T]] | None:
    """`files` brought up to date with `directory`, or None when nothing changed. A file that
    does not load is kept with its error and logged on `log` ("<what> skipped: ..."). OSError
    when the directory cannot be listed."""
    paths = json_files_in(directory)
    fresh, seen, changed = dict(files), set(), False
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue  # removed between glob and stat
        seen.add(path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        old = fresh.get(path)
        if old is not None and old.stamp == stamp:
            continue
        changed = True
        try:
            fresh[path] = Loaded(stamp, load(path), None)
        except HostFileError as exc:
            log.error("%s skipped: %s", what, exc)
            fresh[path] = Loaded(stamp, None, str(exc))
    for gone in set(fresh) - seen:
        changed = True
        del fresh[gone]
    return fresh if changed else None

"""Confined paths, one rule for TFTP and HTTP: what a client may name under a served root.

Names are always relative to the root (a leading `/` is stripped: firmware asks for `/ipxe.efi`);
`..`, backslashes, NUL, hidden (dot) components and over-long names are refused, and symlinks
that lead out of the root too. Pure name checks, plus filesystem lookups (no open) in `resolve`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

from pxelab.errors import PxelabError

__all__ = [
    "MAX_COMPONENT_BYTES",
    "MAX_FILENAME_BYTES",
    "NotAFileError",
    "PathRefused",
    "hidden",
    "regular_file",
    "relative_path",
    "resolve",
]

MAX_FILENAME_BYTES = 512
"""Longest filename accepted, in UTF-8 bytes (a whole RFC 1350 request fits in 512 bytes)."""
MAX_COMPONENT_BYTES = 255
"""Longest single path component accepted, in UTF-8 bytes (Linux NAME_MAX)."""


class PathRefused(PxelabError):
    """A filename may not be served; the message says why (a TFTP client gets ERROR 2)."""


class NotAFileError(OSError):
    """The path exists but is not a regular file (directory, FIFO, device)."""


def _components(filename: str) -> list[str]:
    return [part for part in filename.split("/") if part not in ("", ".")]


def hidden(filename: str) -> bool:
    """True when a component of `filename` starts with a dot: never served.

    Unverified partial downloads wait in `<images_dir>/.incoming/` until they are checked.
    """
    return any(part.startswith(".") for part in _components(filename))


def relative_path(filename: str) -> PurePosixPath:
    """Check a client's filename (pure, no I/O) and return it relative to the root."""
    size = len(filename.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILENAME_BYTES:
        raise PathRefused(f"filename is {size} bytes long, more than {MAX_FILENAME_BYTES}")
    if "\0" in filename:
        raise PathRefused("filename contains a NUL byte")
    if "\\" in filename:
        raise PathRefused("filename contains a backslash")
    parts = _components(filename)
    if ".." in parts:
        raise PathRefused("filename has a '..' component")
    if not parts:
        raise PathRefused("filename names the root directory")
    if hidden(filename):
        raise PathRefused("filename has a hidden component (a name starting with '.')")
    for part in parts:
        if len(part.encode("utf-8", errors="surrogatepass")) > MAX_COMPONENT_BYTES:
            raise PathRefused(f"a path component is longer than {MAX_COMPONENT_BYTES} bytes")
    return PurePosixPath(*parts)


def resolve(real_root: Path, filename: str) -> Path:
    """Return the real path `filename` names under `real_root` (itself a resolved path).

    Follows symlinks with os.path.realpath (filesystem lookups, no open) and refuses a result
    outside the root. The caller opens the returned path, not the original one.
    """
    candidate = Path(os.path.realpath(real_root / relative_path(filename)))
    if not candidate.is_relative_to(real_root):
        raise PathRefused("filename resolves outside the root (symlink)")
    if candidate == real_root:
        raise PathRefused("filename resolves to the root directory")
    return candidate


def regular_file(root: Path, filename: str) -> Path:
    """The regular file `filename` names under `root` (blocking: call it in a worker thread).

    Raises PathRefused, NotAFileError, or OSError (FileNotFoundError for a missing file).
    """
    path = resolve(Path(os.path.realpath(root)), filename)
    if not path.is_file():
        if path.exists():
            raise NotAFileError(errno.EACCES, "not a regular file", filename)
        raise FileNotFoundError(errno.ENOENT, "no such file", filename)
    return path

"""Map a TFTP filename to a file under the root, refusing anything that could leave it.

A leading `/` is stripped (firmware asks for `/ipxe.efi`): names are always relative to the root.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from pxelab.errors import PxelabError

__all__ = ["MAX_COMPONENT_BYTES", "MAX_FILENAME_BYTES", "PathRefused", "relative_path", "resolve"]

MAX_FILENAME_BYTES = 512
"""Longest filename accepted, in UTF-8 bytes (a whole RFC 1350 request fits in 512 bytes)."""
MAX_COMPONENT_BYTES = 255
"""Longest single path component accepted, in UTF-8 bytes (Linux NAME_MAX)."""


class PathRefused(PxelabError):
    """A filename may not be served; the message says why (the client gets ERROR 2)."""


def relative_path(filename: str) -> PurePosixPath:
    """Check a client's filename (pure, no I/O) and return it relative to the root."""
    size = len(filename.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILENAME_BYTES:
        raise PathRefused(f"filename is {size} bytes long, more than {MAX_FILENAME_BYTES}")
    if "\0" in filename:
        raise PathRefused("filename contains a NUL byte")
    if "\\" in filename:
        raise PathRefused("filename contains a backslash")
    parts = [part for part in filename.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathRefused("filename has a '..' component")
    if not parts:
        raise PathRefused("filename names the root directory")
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
        raise PathRefused("filename resolves outside the TFTP root (symlink)")
    if candidate == real_root:
        raise PathRefused("filename resolves to the root directory")
    return candidate

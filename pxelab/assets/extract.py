"""Copy files out of an ISO with pycdlib: Rock Ridge, Joliet, UDF or plain ISO9660 names.

Blocking and streaming (pycdlib copies in blocks, memory stays flat): run it in a thread with
`extract_async`. Each failure names the ISO and the path.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pycdlib
from pycdlib.pycdlibexception import PyCdlibException

from pxelab.assets import AssetError

BLOCK = 1 << 20


@dataclass(frozen=True)
class IsoFile:
    """Where a wanted file is in an ISO."""

    facade: str
    """The pycdlib keyword that finds it: rr_path, joliet_path, udf_path or iso_path."""
    path: str
    """Its path in that namespace."""
    size: int
    """Its size in bytes."""


@contextmanager
def open_iso(iso: Path) -> Iterator[Any]:
    """An open pycdlib.PyCdlib for iso; AssetError when it is not a readable ISO or truncated."""
    try:
        size = iso.stat().st_size
    except OSError as exc:
        raise AssetError(f"{iso}: cannot read: {exc.strerror}") from None
    cd = pycdlib.PyCdlib()
    try:
        cd.open(str(iso))
    except (PyCdlibException, OSError, ValueError) as exc:
        raise AssetError(f"{iso}: not a readable ISO 9660/UDF image: {exc}") from None
    try:
        declared = cd.pvd.space_size * cd.logical_block_size
        if size < declared:
            raise AssetError(
                f"{iso}: truncated: the volume descriptor says {declared} bytes, the file has {size}"
            )
        yield cd
    finally:
        cd.close()


def _norm_iso9660(name: str) -> str:
    """`VMLINUZ.;1` -> `vmlinuz`, `INITRD.IMG;1` -> `initrd.img`."""
    return name.split(";", 1)[0].rstrip(".").lower()


def _iso9660_path(cd: Any, path: str) -> str | None:
    """The ISO9660 path of `path` when its names match case-insensitively (without `;1`)."""
    current = "/"
    for part in path.strip("/").split("/"):
        want = _norm_iso9660(part).replace("-", "_")
        for child in cd.list_children(iso_path=current):
            ident = child.file_identifier().decode("ascii", "replace")
            if ident in (".", "..") or child.is_dot() or child.is_dotdot():
                continue
            if _norm_iso9660(ident) in (want, _norm_iso9660(part)):
                current = current.rstrip("/") + "/" + ident
                break
        else:
            return None
    return current


def find(cd: Any, path: str) -> IsoFile | None:
    """Where `path` (e.g. `casper/vmlinuz`) is in the ISO: Rock Ridge, Joliet, UDF, then ISO9660."""
    absolute = "/" + path.strip("/")
    candidates: list[tuple[str, str]] = []
    if cd.rock_ridge:
        candidates.append(("rr_path", absolute))
    if cd.joliet_vd is not None:
        candidates.append(("joliet_path", absolute))
    if cd.has_udf():
        candidates.append(("udf_path", absolute))
    for facade, candidate in candidates:
        try:
            record = cd.get_record(**{facade: candidate})
        except PyCdlibException:
            continue
        if record.is_file():
            return IsoFile(facade, candidate, record.get_data_length())
    try:
        iso_path = _iso9660_path(cd, absolute)
        if iso_path is not None:
            record = cd.get_record(iso_path=iso_path)
            if record.is_file():
                return IsoFile("iso_path", iso_path, record.get_data_length())
    except PyCdlibException:
        pass
    return None


def extract(iso: Path, wanted: Mapping[str, Path]) -> dict[str, int]:
    """Copy each ISO path in wanted to its target file; returns path -> bytes written.

    AssetError names the ISO and the path when a path is missing or the copy comes up short;
    targets already written are left for the caller to remove.
    """
    sizes: dict[str, int] = {}
    with open_iso(iso) as cd:
        located: dict[str, IsoFile] = {}
        for path in wanted:
            found = find(cd, path)
            if found is None:
                raise AssetError(
                    f"{iso}: no file {path!r} in the ISO (looked in {_namespaces(cd)})"
                )
            located[path] = found
        for path, target in wanted.items():
            found = located[path]
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with target.open("wb") as out:
                    cd.get_file_from_iso_fp(out, blocksize=BLOCK, **{found.facade: found.path})
                    out.flush()
                    os.fsync(out.fileno())
            except (PyCdlibException, OSError) as exc:
                raise AssetError(f"{iso}: cannot copy {path!r}: {exc}") from None
            written = target.stat().st_size
            if written != found.size:
                raise AssetError(
                    f"{iso}: {path!r} came out {written} bytes, the ISO says {found.size}"
                    " (truncated image?)"
                )
            sizes[path] = written
    return sizes


def _namespaces(cd: Any) -> str:
    names = ["ISO9660"]
    if cd.rock_ridge:
        names.append("Rock Ridge")
    if cd.joliet_vd is not None:
        names.append("Joliet")
    if cd.has_udf():
        names.append("UDF")
    return ", ".join(names)


async def extract_async(iso: Path, wanted: Mapping[str, Path]) -> dict[str, int]:
    """`extract` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(extract, iso, wanted)

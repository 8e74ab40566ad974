"""Build small ISOs for the asset tests and the extraction benchmark (pycdlib or xorriso).

Styles: `rockridge` (Rock Ridge + Joliet), `joliet`, `iso9660` (plain level 1, upper-case
8.3 names), `udf` (files only in UDF, as on Windows ISOs), `hybrid` (xorriso, GPT + MBR with an
appended EFI partition, like Ubuntu's). File contents are streamed from disk.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import Any

import pycdlib

STYLES = ("rockridge", "joliet", "iso9660", "udf", "hybrid")


def _iso9660_name(name: str, is_dir: bool) -> str:
    stem, _, ext = name.upper().replace("-", "_").partition(".")
    return stem[:8] if is_dir else f"{stem[:8]}.{ext[:3]};1"


def build_iso(out: Path, files: Mapping[str, Path], style: str = "rockridge") -> None:
    """Write an ISO at out holding files (ISO path like `casper/vmlinuz` -> file on disk)."""
    if style not in STYLES:
        raise ValueError(f"unknown ISO style {style!r} (one of {', '.join(STYLES)})")
    if style == "hybrid":
        _build_xorriso(out, files)
        return
    cd = pycdlib.PyCdlib()
    cd.new(
        interchange_level=1 if style in ("iso9660", "udf") else 3,
        vol_ident="PXELAB_TEST",
        rock_ridge="1.09" if style == "rockridge" else None,
        joliet=3 if style in ("rockridge", "joliet") else None,
        udf="2.60" if style == "udf" else None,
    )
    made: set[str] = set()
    with ExitStack() as stack:
        if style == "udf":  # a stub for ISO9660 readers, as Windows ISOs have
            readme = stack.enter_context(tempfile.TemporaryFile())
            readme.write(b"This disc contains a UDF file system.\n")
            readme.seek(0)
            cd.add_fp(readme, 38, iso_path="/README.TXT;1")
        for inside, src in files.items():
            parts = PurePosixPath(inside.strip("/")).parts
            for depth in range(1, len(parts)):
                _add_dir(cd, parts[:depth], style, made)
            fp = stack.enter_context(src.open("rb"))
            cd.add_fp(fp, src.stat().st_size, **_names(parts, style, is_dir=False))
        cd.write(str(out))
        cd.close()


def _names(parts: tuple[str, ...], style: str, is_dir: bool) -> dict[str, Any]:
    path = "/" + "/".join(parts)
    if style == "udf":
        return {"udf_path": path}
    iso_parts = [_iso9660_name(p, True) for p in parts[:-1]]
    iso_parts.append(_iso9660_name(parts[-1], is_dir))
    names: dict[str, Any] = {"iso_path": "/" + "/".join(iso_parts)}
    if style == "rockridge":
        names["rr_name"] = parts[-1]
    if style in ("rockridge", "joliet"):
        names["joliet_path"] = path
    return names


def _add_dir(cd: pycdlib.PyCdlib, parts: tuple[str, ...], style: str, made: set[str]) -> None:
    key = "/".join(parts)
    if key not in made:
        made.add(key)
        cd.add_directory(**_names(parts, style, is_dir=True))


def _build_xorriso(out: Path, files: Mapping[str, Path]) -> None:
    xorriso = shutil.which("xorriso")
    if xorriso is None:
        raise FileNotFoundError("xorriso is not installed (apt-get install xorriso)")
    with tempfile.TemporaryDirectory() as tmp:
        esp = Path(tmp) / "efi.img"
        esp.write_bytes(b"\0" * (1 << 20))
        cmd = [xorriso, "-as", "mkisofs", "-R", "-J", "-V", "PXELAB_HYBRID", "-o", str(out)]
        cmd += ["-partition_offset", "16", "-append_partition", "2", "0xef", str(esp)]
        cmd += ["-appended_part_as_gpt", "-graft-points"]
        cmd += [f"/{inside.strip('/')}={src}" for inside, src in files.items()]
        subprocess.run(cmd, check=True, capture_output=True)

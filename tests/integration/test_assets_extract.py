"""Extraction and `import_iso` on a hybrid ISO that xorriso writes (MBR + GPT, as Ubuntu's)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pxelab.assets.extract import extract
from pxelab.assets.store import import_iso, list_cache, read_manifest
from pxelab.testing.testiso import build_iso

KERNEL_PATH, INITRD_PATH = "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"


@pytest.fixture
def payload(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(os.urandom(512_345))
    (src / "i").write_bytes(os.urandom(1_048_577))
    return {KERNEL_PATH: src / "k", INITRD_PATH: src / "i"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_import_extracts_from_a_hybrid_iso(payload: dict[str, Path], tmp_path: Path) -> None:
    iso = tmp_path / "os-hybrid.iso"
    build_iso(iso, payload, "hybrid")
    images = tmp_path / "images"
    manifest = await import_iso(iso, "os", "amd64", KERNEL_PATH, INITRD_PATH, images)
    target = images / "os" / "amd64"
    assert digest(target / "vmlinuz") == digest(payload[KERNEL_PATH])
    assert digest(target / "initrd") == digest(payload[INITRD_PATH])
    assert digest(target / iso.name) == digest(iso)
    assert read_manifest(target) == manifest
    assert not manifest.verified  # no --sha256 given
    assert {r.state for r in list_cache(images, check=True)} == {"unverified"}


def test_hybrid_iso_has_partition_tables_and_still_extracts(
    payload: dict[str, Path], tmp_path: Path
) -> None:
    iso = tmp_path / "hybrid.iso"
    build_iso(iso, payload, "hybrid")
    head = iso.read_bytes()[:1024]
    assert head[510:512] == b"\x55\xaa"  # MBR
    assert head[512:520] == b"EFI PART"  # GPT header
    out = tmp_path / "k.out"
    assert extract(iso, {KERNEL_PATH: out}) == {KERNEL_PATH: payload[KERNEL_PATH].stat().st_size}
    assert digest(out) == digest(payload[KERNEL_PATH])

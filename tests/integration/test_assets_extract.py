"""Extraction and `import_iso` on a hybrid ISO that xorriso writes (MBR + GPT, as Ubuntu's)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pxelab.assets.extract import extract
from pxelab.testing.testiso import build_iso
from tests.unit.test_assets_extract import import_and_check

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
    await import_and_check(iso, payload, tmp_path / "images")


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

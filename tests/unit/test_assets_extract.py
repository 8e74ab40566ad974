"""Extraction and `import_iso` on ISOs pycdlib writes: every name style, UDF-only, bad ISOs."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest

from pxelab.assets import AssetError
from pxelab.assets.extract import _iso9660_path, extract_async, find, open_iso
from pxelab.assets.store import import_iso, list_cache, read_manifest
from pxelab.testing.testiso import STYLES, build_iso

KERNEL_PATH, INITRD_PATH = "images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"
PURE_STYLES = [s for s in STYLES if s != "hybrid"]
"""ISO styles pycdlib writes in-process (xorriso makes the hybrid one: tests/integration)."""


@pytest.fixture
def payload(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "k").write_bytes(os.urandom(512_345))
    (src / "i").write_bytes(os.urandom(1_048_577))
    return {KERNEL_PATH: src / "k", INITRD_PATH: src / "i"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("style", PURE_STYLES)
async def test_import_extracts_from_every_iso_style(
    style: str, payload: dict[str, Path], tmp_path: Path
) -> None:
    iso = tmp_path / f"os-{style}.iso"
    build_iso(iso, payload, style)
    await import_and_check(iso, payload, tmp_path / "images")


async def import_and_check(iso: Path, payload: dict[str, Path], images: Path) -> None:
    """`pxelab assets import` of iso into images: kernel, initrd and the ISO, byte for byte,
    and an unverified manifest (no --sha256 given)."""
    manifest = await import_iso(iso, "os", "amd64", KERNEL_PATH, INITRD_PATH, images)
    target = images / "os" / "amd64"
    assert digest(target / "vmlinuz") == digest(payload[KERNEL_PATH])
    assert digest(target / "initrd") == digest(payload[INITRD_PATH])
    assert digest(target / iso.name) == digest(iso)
    assert read_manifest(target) == manifest
    assert not manifest.verified
    assert {r.state for r in list_cache(images, check=True)} == {"unverified"}


def test_udf_only_files_are_not_in_the_iso9660_tree(
    payload: dict[str, Path], tmp_path: Path
) -> None:
    iso = tmp_path / "win.iso"
    build_iso(iso, payload, "udf")
    with open_iso(iso) as cd:
        assert _iso9660_path(cd, KERNEL_PATH) is None
        assert not cd.rock_ridge and cd.joliet_vd is None
        found = find(cd, KERNEL_PATH)
    assert found is not None and found.facade == "udf_path"
    assert found.size == payload[KERNEL_PATH].stat().st_size


def test_plain_iso9660_names_are_matched_without_case_and_version(
    payload: dict[str, Path], tmp_path: Path
) -> None:
    iso = tmp_path / "plain.iso"
    build_iso(iso, payload, "iso9660")
    with open_iso(iso) as cd:
        found = find(cd, INITRD_PATH)
    assert found is not None
    assert (found.facade, found.path) == ("iso_path", "/IMAGES/PXEBOOT/INITRD.IMG;1")


async def test_import_checks_a_given_sha256(payload: dict[str, Path], tmp_path: Path) -> None:
    iso = tmp_path / "os.iso"
    build_iso(iso, payload, "rockridge")
    images = tmp_path / "images"
    with pytest.raises(AssetError, match=rf"{iso}: SHA-256 mismatch"):
        await import_iso(iso, "os", "amd64", KERNEL_PATH, INITRD_PATH, images, "f" * 64)
    assert list_cache(images) == []
    manifest = await import_iso(iso, "os", "amd64", KERNEL_PATH, INITRD_PATH, images, digest(iso))
    assert manifest.verified
    assert {r.state for r in list_cache(images)} == {"verified"}


async def test_import_of_a_truncated_iso_names_it_and_caches_nothing(
    payload: dict[str, Path], tmp_path: Path
) -> None:
    iso = tmp_path / "os.iso"
    build_iso(iso, payload, "rockridge")
    short = tmp_path / "short.iso"
    short.write_bytes(iso.read_bytes()[:-300_000])
    images = tmp_path / "images"
    with pytest.raises(AssetError, match=rf"{short}: truncated"):
        await import_iso(short, "os", "amd64", KERNEL_PATH, INITRD_PATH, images)
    assert list_cache(images) == []
    assert not (images / "os").exists()


async def test_import_of_something_that_is_not_an_iso(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.iso"
    bogus.write_bytes(os.urandom(100_000))
    with pytest.raises(AssetError, match=rf"{bogus}: not a readable ISO"):
        await import_iso(bogus, "os", "amd64", KERNEL_PATH, INITRD_PATH, tmp_path / "images")


async def test_a_missing_path_names_the_iso_and_the_path(
    payload: dict[str, Path], tmp_path: Path
) -> None:
    iso = tmp_path / "os.iso"
    build_iso(iso, payload, "joliet")
    images = tmp_path / "images"
    with pytest.raises(AssetError, match=rf"{iso}: no file 'casper/vmlinuz' in the ISO"):
        await import_iso(iso, "os", "amd64", "casper/vmlinuz", INITRD_PATH, images)
    assert list_cache(images) == []


async def test_extraction_streams_in_a_thread(tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    iso = tmp_path / "big.iso"
    build_iso(iso, {"casper/filesystem.squashfs": big}, "rockridge")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    tracemalloc.start()
    try:
        await extract_async(iso, {"casper/filesystem.squashfs": tmp_path / "out"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        task.cancel()
    assert digest(tmp_path / "out") == digest(big)
    assert peak < 8 << 20, f"extracting 48 MiB allocated {peak} bytes at peak"
    assert ticks > 3  # the event loop kept running while the thread copied


async def test_import_under_a_stable_name(payload: dict[str, Path], tmp_path: Path) -> None:
    iso = tmp_path / "ubuntu-24.04.3-live-server-amd64.iso"
    build_iso(iso, payload, "rockridge")
    images = tmp_path / "images"
    manifest = await import_iso(
        iso, "u", "amd64", KERNEL_PATH, INITRD_PATH, images, name="live-server.iso"
    )
    assert set(manifest.files) == {"vmlinuz", "initrd", "live-server.iso"}
    assert manifest.files["live-server.iso"].origin == str(iso)
    assert digest(images / "u" / "amd64" / "live-server.iso") == digest(iso)

"""`fetch` against a local aiohttp upstream: full, resume, no Range, bad sum, cut, bad ISOs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pxelab.assets import AssetError
from pxelab.assets.catalog import Source
from pxelab.assets.download import meta_path
from pxelab.assets.store import INCOMING, fetch, list_cache, read_manifest
from pxelab.boot.render import Renderer
from pxelab.hosts.inventory import Inventory
from pxelab.http.app import make_app
from pxelab.testing.testiso import build_iso

ISO_NAME = "testos-24.04.2-live-amd64.iso"


@dataclass
class Upstream:
    """A mirror in the test: serves `files` in one of several behaviours and logs requests."""

    files: dict[str, Path]
    mode: str = "normal"  # normal | no-range | cut
    cut_at: int = 0
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    body_bytes: int = 0  # ISO bytes sent
    url: str = ""
    hold: asyncio.Event | None = None  # when set: ISO bodies wait for it

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.requests.append((name, request.headers.get("Range")))
        if self.hold is not None and name.endswith(".iso"):
            await self.hold.wait()
        path = self.files.get(name)
        if path is None:
            raise web.HTTPNotFound()
        size = path.stat().st_size
        if self.mode == "normal":
            rng = request.http_range
            start = rng.start or 0
            if start < size and name.endswith(".iso"):
                self.body_bytes += size - start
            return web.FileResponse(path)
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        limit = self.cut_at if self.mode == "cut" else size
        with path.open("rb") as f:
            await resp.write(f.read(limit))
        self.body_bytes += limit
        if self.mode == "cut":
            assert request.transport is not None
            request.transport.close()
            return resp
        await resp.write_eof()
        return resp


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    served = tmp_path / "served"
    served.mkdir()
    kernel = served / "kernel.bin"
    kernel.write_bytes(os.urandom(700_000))
    initrd = served / "initrd.bin"
    initrd.write_bytes(os.urandom(1_300_000))
    iso = served / ISO_NAME
    build_iso(iso, {"casper/vmlinuz": kernel, "casper/initrd": initrd}, "rockridge")
    files = {ISO_NAME: iso, "vmlinuz-src": kernel, "initrd-src": initrd}
    up = Upstream(files)
    write_sums(up, served / "SHA256SUMS")
    app = web.Application()
    app.router.add_get("/dist/{name}", up.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        up.url = str(server.make_url("/dist/"))
        yield up


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sums(up: Upstream, path: Path, override: dict[str, str] | None = None) -> None:
    lines = [f"{sha(p)} *{n}" for n, p in up.files.items() if n != "SHA256SUMS"]
    for name, value in (override or {}).items():
        lines.append(f"{value} *{name}")
    path.write_text("\n".join(lines) + "\n")
    up.files["SHA256SUMS"] = path


def iso_source(up: Upstream, kernel: str = "casper/vmlinuz") -> Source:
    return Source(
        distro="testos",
        arch="amd64",
        description="test",
        checksums=up.url + "SHA256SUMS",
        iso=up.url + "testos-24.04*-live-amd64.iso",
        kernel=kernel,
        initrd="casper/initrd",
    )


def assert_nothing_cached(images: Path) -> None:
    assert not (images / "testos" / "amd64").exists()
    assert [r for r in list_cache(images) if r.state != "partial download"] == []


async def run_fetch(up: Upstream, images: Path, source: Source | None = None) -> bool:
    async with aiohttp.ClientSession() as session:
        _, new = await fetch(session, source or iso_source(up), images)
    return new


def iso_part(images: Path) -> Path:
    return images / INCOMING / "testos" / "amd64" / f"{ISO_NAME}.part"


async def test_full_download_extracts_and_writes_a_verified_manifest(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    assert await run_fetch(upstream, images) is True
    target = images / "testos" / "amd64"
    assert (target / "vmlinuz").read_bytes() == upstream.files["vmlinuz-src"].read_bytes()
    assert (target / "initrd").read_bytes() == upstream.files["initrd-src"].read_bytes()
    assert sha(target / ISO_NAME) == sha(upstream.files[ISO_NAME])
    manifest = read_manifest(target)
    assert manifest is not None and manifest.verified
    assert manifest.source == upstream.url + ISO_NAME
    assert manifest.files["vmlinuz"].size == 700_000
    assert manifest.files["vmlinuz"].origin == "casper/vmlinuz"
    assert manifest.files[ISO_NAME].sha256 == sha(upstream.files[ISO_NAME])
    assert {r.name: r.state for r in list_cache(images, check=True)} == {
        ISO_NAME: "verified",
        "initrd": "verified",
        "vmlinuz": "verified",
    }
    assert not iso_part(images).exists() and not meta_path(iso_part(images)).exists()
    # Already cached: only the checksum list is asked for again.
    upstream.requests.clear()
    assert await run_fetch(upstream, images) is False
    assert upstream.requests == [("SHA256SUMS", None)]


async def test_resume_asks_for_the_rest_only(upstream: Upstream, tmp_path: Path) -> None:
    images = tmp_path / "images"
    iso = upstream.files[ISO_NAME]
    half = iso.stat().st_size // 2
    part = iso_part(images)
    part.parent.mkdir(parents=True)
    part.write_bytes(iso.read_bytes()[:half])
    meta_path(part).write_text(json.dumps({"url": upstream.url + ISO_NAME}))
    assert await run_fetch(upstream, images)
    assert (ISO_NAME, f"bytes={half}-") in upstream.requests
    assert upstream.body_bytes == iso.stat().st_size - half
    assert sha(images / "testos" / "amd64" / ISO_NAME) == sha(iso)


async def test_a_server_without_range_restarts_the_file(upstream: Upstream, tmp_path: Path) -> None:
    images = tmp_path / "images"
    iso = upstream.files[ISO_NAME]
    part = iso_part(images)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 100_000)  # appending to this would never verify
    meta_path(part).write_text(json.dumps({"url": upstream.url + ISO_NAME}))
    upstream.mode = "no-range"
    assert await run_fetch(upstream, images)
    assert (ISO_NAME, "bytes=100000-") in upstream.requests
    cached = images / "testos" / "amd64" / ISO_NAME
    assert cached.stat().st_size == iso.stat().st_size
    assert sha(cached) == sha(iso)


async def test_checksum_mismatch_caches_nothing(upstream: Upstream, tmp_path: Path) -> None:
    images = tmp_path / "images"
    write_sums(upstream, upstream.files["SHA256SUMS"])
    text = upstream.files["SHA256SUMS"].read_text()
    upstream.files["SHA256SUMS"].write_text(text.replace(sha(upstream.files[ISO_NAME]), "0" * 64))
    with pytest.raises(AssetError, match=r"SHA-256 mismatch.*0{64}"):
        await run_fetch(upstream, images)
    assert_nothing_cached(images)
    assert not iso_part(images).exists()


async def test_an_interrupted_download_caches_nothing_and_resumes(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    iso = upstream.files[ISO_NAME]
    upstream.mode, upstream.cut_at = "cut", 300_000
    with pytest.raises(AssetError, match=r"interrupted at 300000 bytes.*run again to resume"):
        await run_fetch(upstream, images)
    assert_nothing_cached(images)
    assert iso_part(images).stat().st_size == 300_000
    assert [r.state for r in list_cache(images)] == ["partial download"]
    upstream.mode = "normal"
    upstream.requests.clear()
    assert await run_fetch(upstream, images)
    assert upstream.requests[1] == (ISO_NAME, "bytes=300000-")
    assert sha(images / "testos" / "amd64" / ISO_NAME) == sha(iso)


async def test_a_truncated_iso_is_refused(upstream: Upstream, tmp_path: Path) -> None:
    images = tmp_path / "images"
    truncated = tmp_path / "served" / "short.iso"
    data = upstream.files[ISO_NAME].read_bytes()
    truncated.write_bytes(data[: len(data) - 200_000])
    upstream.files[ISO_NAME] = truncated  # the published sum is of the truncated file
    write_sums(upstream, upstream.files["SHA256SUMS"])
    with pytest.raises(AssetError, match=r"truncated: the volume descriptor says \d+ bytes"):
        await run_fetch(upstream, images)
    assert_nothing_cached(images)


async def test_a_path_missing_from_the_iso_caches_nothing(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    with pytest.raises(AssetError, match=r"no file 'casper/nope' in the ISO \(looked in ISO9660"):
        await run_fetch(upstream, images, iso_source(upstream, kernel="casper/nope"))
    assert_nothing_cached(images)
    assert list(images.rglob("vmlinuz*")) == []


async def test_netboot_files_are_checked_against_a_debian_style_list(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    kernel, initrd = upstream.files["vmlinuz-src"], upstream.files["initrd-src"]
    upstream.files["SHA256SUMS"].write_text(
        f"{sha(kernel)}  ./vmlinuz-src\n{sha(initrd)}  ./initrd-src\n"
    )
    source = Source(
        "testos",
        "amd64",
        "t",
        upstream.url + "SHA256SUMS",
        None,
        upstream.url + "vmlinuz-src",
        upstream.url + "initrd-src",
    )
    assert await run_fetch(upstream, images, source)
    target = images / "testos" / "amd64"
    assert (target / "vmlinuz").read_bytes() == kernel.read_bytes()
    assert (target / "initrd").read_bytes() == initrd.read_bytes()
    manifest = read_manifest(target)
    assert manifest is not None and set(manifest.files) == {"vmlinuz", "initrd"}
    assert manifest.files["initrd"].origin == upstream.url + "initrd-src"


async def test_two_commands_on_one_distro_do_not_share_part_files(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    upstream.mode, upstream.cut_at, upstream.hold = "no-range", 0, asyncio.Event()
    first = asyncio.create_task(run_fetch(upstream, images))  # holds its lock until released
    lock = images / INCOMING / "testos" / "amd64" / ".lock"
    for _ in range(3000):  # a positive signal, waited for up to 30 s on a loaded machine
        if lock.exists() and any(name.endswith(".iso") for name, _ in upstream.requests):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the first fetch never held its lock while downloading")
    with pytest.raises(AssetError, match=r"testos/amd64: another pxelab assets command"):
        await run_fetch(upstream, images)
    upstream.hold.set()
    assert await first
    assert read_manifest(images / "testos" / "amd64") is not None


async def test_a_complete_part_is_verified_without_a_body(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    iso = upstream.files[ISO_NAME]
    part = iso_part(images)
    part.parent.mkdir(parents=True)
    part.write_bytes(iso.read_bytes())
    meta_path(part).write_text(json.dumps({"url": upstream.url + ISO_NAME}))
    assert await run_fetch(upstream, images)  # the server answers 416 to bytes=<size>-
    assert (ISO_NAME, f"bytes={iso.stat().st_size}-") in upstream.requests
    assert upstream.body_bytes == 0
    assert sha(images / "testos" / "amd64" / ISO_NAME) == sha(iso)


async def test_a_bad_part_is_caught_by_the_hash_and_the_next_run_starts_over(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    iso = upstream.files[ISO_NAME]
    part = iso_part(images)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\xff" * 4096)  # e.g. left by another tool: resuming appends to junk
    meta_path(part).write_text(json.dumps({"url": upstream.url + ISO_NAME}))
    with pytest.raises(AssetError, match=r"SHA-256 mismatch.*the partial file was removed"):
        await run_fetch(upstream, images)
    assert not part.exists()
    assert_nothing_cached(images)
    upstream.requests.clear()
    assert await run_fetch(upstream, images)
    assert (ISO_NAME, None) in upstream.requests
    assert sha(images / "testos" / "amd64" / ISO_NAME) == sha(iso)


async def test_the_http_server_serves_what_fetch_cached(upstream: Upstream, tmp_path: Path) -> None:
    images = tmp_path / "images"
    assert await run_fetch(upstream, images)
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    mac = "52:54:00:12:34:56"
    (hosts / "vm.json").write_text(
        json.dumps({"name": "vm", "mac": mac, "arch": "x86_64", "distro": "testos"})
    )
    app = make_app(Inventory(hosts), Renderer(), images)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/boot", params={"mac": mac})
        script = await resp.text()
        assert resp.status == 200, script
        paths = re.findall(r"http://[^/\s]+(/images/testos/amd64/\w+)", script)
        assert paths == ["/images/testos/amd64/vmlinuz", "/images/testos/amd64/initrd"]
        for path, src in zip(paths, ("vmlinuz-src", "initrd-src"), strict=True):
            served = await client.get(path)
            assert served.status == 200
            assert await served.read() == upstream.files[src].read_bytes()


async def test_an_iso_name_gives_the_cached_iso_a_stable_name(
    upstream: Upstream, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    source = replace(iso_source(upstream), iso_name="live-server.iso")
    assert await run_fetch(upstream, images, source)
    target = images / "testos" / "amd64"
    assert sorted(p.name for p in target.iterdir()) == [
        "initrd",
        "live-server.iso",
        "manifest.json",
        "vmlinuz",
    ]
    assert sha(target / "live-server.iso") == sha(upstream.files[ISO_NAME])
    manifest = read_manifest(target)
    assert manifest is not None and manifest.files["live-server.iso"].origin.endswith(ISO_NAME)
    assert await run_fetch(upstream, images, source) is False

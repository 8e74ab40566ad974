"""The HTTP app on a real socket: scripts, status codes, images with Range and HEAD, confinement."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pxelab.boot.render import Renderer
from pxelab.hosts.inventory import Inventory
from pxelab.http.app import make_app

MAC = "52:54:00:aa:bb:01"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    hosts, images, tpl = tmp_path / "hosts", tmp_path / "images", tmp_path / "tpl"
    for d in (hosts, images / "demo" / "amd64", tpl):
        d.mkdir(parents=True)
    (hosts / "vm.json").write_text(
        json.dumps({"name": "vm", "mac": MAC.upper(), "distro": "demo", "kernel_args": "k=v"})
    )
    (hosts / "bad.json").write_text(json.dumps({"name": "bad", "mac": "52:54:00:aa:bb:02"}))
    (images / "demo" / "amd64" / "vmlinuz").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "secret").write_text("outside")
    os.symlink(tmp_path / "secret", images / "demo" / "link")
    app = make_app(Inventory(hosts), Renderer(tpl), images)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_boot_script_for_a_known_mac(client: Client) -> None:
    for path in ("/boot", "/ipxe"):
        resp = await client.get(path, params={"mac": MAC.replace(":", "-").upper()})
        assert resp.status == 200
        text = await resp.text()
        base = f"http://{client.host}:{client.port}"
        assert f"kernel {base}/images/demo/amd64/vmlinuz initrd=initrd console=ttyS0 k=v" in text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({}, 400),
        ({"mac": "nope"}, 400),
        ({"mac": "52:54:00:00:00:00"}, 404),
        ({"mac": "52:54:00:aa:bb:02"}, 500),
    ],
)
async def test_boot_script_errors(client: Client, query: dict[str, str], status: int) -> None:
    resp = await client.get("/boot", params=query)
    assert resp.status == status
    assert "#!ipxe" not in await resp.text()


async def test_chain_script(client: Client) -> None:
    resp = await client.get("/boot.ipxe")
    assert resp.status == 200
    assert "/boot?mac=${netX/mac}" in await resp.text()


async def test_images_range_and_head(client: Client) -> None:
    url = "/images/demo/amd64/vmlinuz"
    whole = await client.get(url)
    assert whole.status == 200 and await whole.read() == bytes(range(256)) * 4
    part = await client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and await part.read() == bytes(range(10, 20))
    head = await client.head(url)
    assert head.status == 200 and head.headers["Content-Length"] == "1024"
    assert await head.read() == b""


@pytest.mark.parametrize("rng", ["bytes=1024-", "bytes=5000-6000", "bytes=abc"])
async def test_an_unsatisfiable_range_is_416_with_its_line(client: Client, rng: str) -> None:
    resp = await client.get("/images/demo/amd64/vmlinuz", headers={"Range": rng})
    assert resp.status == 416 and resp.headers["Content-Range"] == "bytes */1024"
    text = await resp.text()
    assert text == f"range {rng!r} is not satisfiable: demo/amd64/vmlinuz has 1024 bytes\n"
    stale = await client.get(  # If-Range no longer matches: the whole file, as aiohttp does
        "/images/demo/amd64/vmlinuz",
        headers={"Range": rng, "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"},
    )
    assert stale.status == 200 and len(await stale.read()) == 1024
    tail = await client.get("/images/demo/amd64/vmlinuz", headers={"Range": "bytes=-5000"})
    assert tail.status == 206 and len(await tail.read()) == 1024


@pytest.mark.parametrize(
    "path",
    [
        "/images/demo/link",
        "/images/../secret",
        "/images/demo/%2e%2e/%2e%2e/secret",
        "/images/demo/amd64",
        "/images/nope",
    ],
)
async def test_images_stay_inside_the_images_dir(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
    assert b"outside" not in await resp.read()

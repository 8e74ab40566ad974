"""The status page without a browser: the JS-off HTML snapshot, the reinstall form, the SSE stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pxelab.assets.store import FileEntry, Manifest
from pxelab.boot.render import Renderer
from pxelab.events import Event, Timeline
from pxelab.hosts.install import InstallStore
from pxelab.hosts.inventory import Inventory
from pxelab.http.app import make_app
from pxelab.http.status import STATUS_HUB
from tests.auth_helpers import AUTH, TOKEN, guard_with_token
from tests.unit.test_status import _dhcp, _not_found, _sent, _timed_out

MAC = "52:54:00:5a:00:01"
KEY = "52-54-00-5a-00-01"
OTHER = "52:54:00:5a:00:02"
STRANGER = "52:54:00:5a:00:99"
Client = TestClient[web.Request, web.Application]


class Node:
    """An element of the parsed page: tag, attributes, children and text."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Node] = []
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts + [c.text for c in self.children]).split())

    def walk(self) -> list[Node]:
        return [self, *(n for c in self.children for n in c.walk())]

    def find(self, id_: str) -> Node:
        found = [n for n in self.walk() if n.attrs.get("id") == id_]
        assert len(found) == 1, f"expected one element with id {id_!r}, found {len(found)}"
        return found[0]

    def all(self, tag: str) -> list[Node]:
        return [n for n in self.walk() if n.tag == tag]


VOID = {"meta", "link", "br", "img", "input", "hr"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def _manifest(directory: Path, verified: bool) -> None:
    files = {}
    for name in ("vmlinuz", "initrd"):
        data = (directory / name).read_bytes()
        files[name] = FileEntry(len(data), hashlib.sha256(data).hexdigest(), f"casper/{name}")
    manifest = Manifest(
        directory.parent.name,
        directory.name,
        "https://example.org/demo.iso",
        verified,
        "2026-11-01T10:00:00Z",
        files,
    )
    (directory / "manifest.json").write_text(manifest.to_json())


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Client, Timeline, Path]]:
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    for name, mac, distro in (("web-1", MAC, "demo"), ("db-1", OTHER, "debian-12")):
        data = {"name": name, "mac": mac, "distro": distro}
        (hosts / f"{name}.json").write_text(json.dumps(data))
    (hosts / "broken.json").write_text("{not json")
    for distro, verified in (("demo", True), ("debian-12", False)):
        directory = tmp_path / "images" / distro / "amd64"
        directory.mkdir(parents=True)
        (directory / "vmlinuz").write_bytes(b"k" * 2048)
        (directory / "initrd").write_bytes(b"i" * 4096)
        _manifest(directory, verified)
    (tmp_path / "images" / "debian-12" / "amd64" / "initrd").write_bytes(b"changed")
    timeline = Timeline()
    app = make_app(
        Inventory(hosts),
        Renderer(),
        tmp_path / "images",
        timeline,
        install_store=InstallStore(),
        guard=await guard_with_token(),
    )
    async with TestClient(TestServer(app)) as client:
        yield client, timeline, tmp_path


async def _page(client: Client) -> Node:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    return parse(await response.text())


async def _sign_in(client: Client) -> str:
    """Sign the client in with the operator's token; returns the CSRF token of its forms."""
    response = await client.post("/status/signin", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    page = await _page(client)
    return page.find("host-52-54-00-5a-00-01").all("input")[0].attrs["value"]


async def _boot(client: Client, timeline: Timeline) -> None:
    """What the daemon records while a machine boots: DHCP and TFTP (as their servers record
    them), then real HTTP requests for its script and kernel."""
    timeline.record(_dhcp("ACK", "127.0.0.1", "ipxe.efi", mac=MAC, ip="127.0.0.1"))
    timeline.record(_sent("ipxe.efi", 1024, ip="127.0.0.1"))
    assert (await client.get("/boot", params={"mac": MAC})).status == 200
    assert (await client.get("/images/demo/amd64/vmlinuz")).status == 200


async def test_snapshot_without_javascript(setup: tuple[Client, Timeline, Path]) -> None:
    client, timeline, _ = setup
    await _boot(client, timeline)
    signed_out = (await _page(client)).find(f"host-{KEY}")
    assert signed_out.all("form") == [] and signed_out.all("a")[-1].text == "sign in to act"
    await _sign_in(client)
    timeline.record(_not_found("snponly.efi", ip="10.0.0.9"))
    timeline.record(_dhcp("OFFER", "10.0.0.77", "ipxe.efi", mac=STRANGER))
    response = await client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    page = parse(await response.text())

    row = page.find(f"host-{KEY}")
    cells = {td.attrs["data-label"]: td.text for td in row.all("td")}
    assert cells["Host"] == "web-1" and cells["MAC"] == MAC and cells["Arch"] == "x86_64"
    assert cells["Distro"] == "demo" and cells["State"] == "install"
    assert cells["Last stage"].startswith("kernel ") and "s ago" in cells["Last stage"]
    other = {
        td.attrs["data-label"]: td.text for td in page.find("host-52-54-00-5a-00-02").all("td")
    }
    assert other["Last stage"] == "not seen" and other["State"] == "install"
    form = row.all("form")[0]
    assert (
        form.attrs["method"] == "post" and form.attrs["action"] == f"/status/hosts/{MAC}/reinstall"
    )

    items = [li for li in page.find(f"tl-{KEY}").all("li") if li.all("time")]
    stages = [li.all("span")[0].text for li in items]
    assert stages == ["kernel", "script", "tftp", "dhcp"]  # newest first
    assert "ACK 127.0.0.1 ipxe.efi" in page.find(f"tl-{KEY}").text
    steps = {
        li.text: li.attrs["class"] for li in page.find(f"tl-{KEY}").all("li") if not li.all("time")
    }
    assert steps == {
        "DHCP": "done", "TFTP": "done", "iPXE": "todo", "script": "done", "kernel": "done",
        "initrd": "todo", "install data": "todo", "installed": "todo",
    }  # fmt: skip
    assert "OFFER 10.0.0.77" in page.find(f"host-{STRANGER.replace(':', '-')}").text
    assert page.find(f"tl-{STRANGER.replace(':', '-')}").text.count("not in the inventory") == 1

    problems = [li.text for li in page.find("problems").all("li")]
    assert any("10.0.0.9 tftp" in p and "file not found" in p for p in problems)
    assert any("broken.json" in p and "invalid JSON" in p for p in problems), problems
    assert any("asset debian-12/amd64/initrd" in p and "CHANGED" in p for p in problems)
    assert not any("ipxe.efi: sent" in p for p in problems)

    assets = [[td.text for td in tr.all("td")] for tr in page.find("assets").all("tr")[1:]]
    assert ["demo", "amd64", "vmlinuz", "2.0 KiB", "verified"] in assets
    assert ["debian-12", "amd64", "initrd", "7 B", "CHANGED"] in assets
    assert "example.org/demo.iso, cached 2026-11-01T10:00:00Z" in page.find("assets").text

    # nothing from other sites: every reference is to this server
    refs = [n.attrs.get("href") or n.attrs.get("src") or "" for n in page.walk()]
    refs = [r for r in refs if r]
    assert {r for r in refs if not r.startswith(("/", "#"))} == set()
    assert "/status/status.js" in refs and "/status/status.css" in refs
    assert page.find("hosts").all("h2")[0].text == "Hosts" and "· 2 hosts ·" in page.text
    for path, kind in (
        ("/status/status.js", "text/javascript"),
        ("/status/status.css", "text/css"),
        ("/status/favicon.svg", "image/svg+xml"),
    ):
        asset = await client.get(path)
        assert asset.status == 200 and asset.content_type == kind
        text = (await asset.text()).replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name
        assert "http://" not in text and "https://" not in text


async def test_snapshot_escapes_what_machines_send(setup: tuple[Client, Timeline, Path]) -> None:
    client, timeline, _ = setup
    timeline.record(Event(time.time(), "error", mac=MAC, error="<script>alert(1)</script>"))
    html = await (await client.get("/")).text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


async def test_form_post_reinstalls_and_redirects_back(
    setup: tuple[Client, Timeline, Path],
) -> None:
    client, timeline, _ = setup
    assert (await client.post(f"/api/hosts/{MAC}/installed", headers=AUTH)).status == 200
    form_url = f"/status/hosts/{MAC.upper().replace(':', '-')}/reinstall"
    signed_out = await client.post(form_url, allow_redirects=False)
    assert signed_out.status == 403 and "not signed in" in await signed_out.text()
    csrf = await _sign_in(client)
    assert (await client.post(form_url, allow_redirects=False)).status == 403  # no CSRF token
    wrong = await client.post(form_url, data={"csrf": csrf[:-1]}, allow_redirects=False)
    assert wrong.status == 403 and "CSRF" in await wrong.text()
    cookie_only = await client.post(f"/api/hosts/{MAC}/reinstall", data={"csrf": csrf})
    assert cookie_only.status == 401  # the session never stands in for the API's token
    page = await _page(client)
    assert page.find(f"host-{KEY}").all("td")[5].text == "installed"  # after Kernel

    foreign = await client.post(
        form_url,
        data={"csrf": csrf},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    )
    assert foreign.status == 403 and "another site" in await foreign.text()
    opaque = await client.post(
        form_url, data={"csrf": csrf}, headers={"Origin": "null"}, allow_redirects=False
    )
    assert opaque.status == 403

    async def state() -> str:
        return str((await (await client.get(f"/api/hosts/{MAC}")).json())["state"])

    assert await state() == "installed"

    origin = f"http://{client.host}:{client.port}"
    response = await client.post(
        form_url, data={"csrf": csrf}, headers={"Origin": origin}, allow_redirects=False
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/#host-{KEY}"
    assert await state() == "install"
    last = timeline.last(MAC)
    assert last is not None and last.stage == "reinstall"

    followed = await client.post(
        form_url, data={"csrf": csrf}
    )  # no Origin (older browsers, curl): allowed
    assert followed.status == 200 and str(followed.url).endswith("/")
    page = parse(await followed.text())
    cells = {td.attrs["data-label"]: td.text for td in page.find(f"host-{KEY}").all("td")}
    assert cells["State"] == "install" and cells["Last stage"].startswith("reinstall")
    api = await (await client.get(f"/api/hosts/{MAC}")).json()
    assert api["state"] == "install"

    unknown = "/status/hosts/52:54:00:00:00:00/reinstall"
    assert (await client.post(unknown, data={"csrf": csrf})).status == 404
    nonsense = "/status/hosts/nonsense/reinstall"
    assert (await client.post(nonsense, data={"csrf": csrf})).status == 400

    out = await client.post("/status/signout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert (await client.post(form_url, data={"csrf": csrf})).status == 403  # signed out
    assert (await _page(client)).find(f"host-{KEY}").all("form") == []
    assert (await client.get(f"/status/hosts/{MAC}/reinstall")).status == 405


async def _message(stream: Any) -> tuple[str, dict[str, Any]]:
    """The next SSE message (comments skipped): (event name, decoded data)."""
    while True:
        block = (await asyncio.wait_for(stream.readuntil(b"\n\n"), 10)).decode()
        fields = dict(
            line.split(": ", 1) for line in block.strip().splitlines() if not line.startswith(":")
        )
        if "event" in fields:
            return fields["event"], json.loads(fields["data"])


async def test_stream_sends_each_event_as_rendered_html(
    setup: tuple[Client, Timeline, Path],
) -> None:
    client, timeline, _ = setup
    response = await client.get("/status/events")
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await _message(response.content) == ("hello", {})

    assert (await client.get("/boot", params={"mac": MAC})).status == 200
    name, data = await _message(response.content)
    assert name == "boot" and data["key"] == KEY and data["stage"] == "script" and data["known"]
    row = parse(data["row"]).find(f"host-{KEY}")
    assert "script" in row.all("td")[6].text and row.all("td")[0].text == "web-1"
    assert "boot script /boot" in parse(data["item"]).text
    assert parse(data["timeline"]).find(f"tl-{KEY}").all("li")
    assert data["problem"] == ""

    timeline.record(_timed_out("x.efi", ip="1.2.3.4"))
    name, data = await _message(response.content)
    assert data["key"] == "" and "1.2.3.4 tftp" in parse(data["problem"]).text

    timeline.record(_dhcp("OFFER", "10.0.0.5", mac=STRANGER))
    name, data = await _message(response.content)
    assert data["known"] is False
    row = parse(data["row"]).find(f"host-{STRANGER.replace(':', '-')}")
    assert "OFFER 10.0.0.5" in row.text
    response.close()


async def test_a_browser_that_goes_away_is_forgotten(
    setup: tuple[Client, Timeline, Path],
) -> None:
    client, timeline, _ = setup
    hub = client.app[STATUS_HUB]
    response = await client.get("/status/events")
    assert (await _message(response.content))[0] == "hello"
    assert hub.clients == 1
    response.close()
    deadline = time.monotonic() + 30
    while hub.clients and time.monotonic() < deadline:
        timeline.record(_dhcp("DISCOVER", mac=MAC))  # the next write fails
        await asyncio.sleep(0.05)
    assert hub.clients == 0


async def test_open_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    app = make_app(Inventory(None), Renderer(), tmp_path)
    server = TestServer(app)
    async with TestClient(server) as client:
        response = await client.get("/status/events")
        assert (await _message(response.content))[0] == "hello"
        started = time.monotonic()
        await server.close()
        assert time.monotonic() - started < 5
        assert await asyncio.wait_for(response.content.read(), 5) == b""

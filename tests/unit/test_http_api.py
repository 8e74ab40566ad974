"""pxelab.http.api directly, in process (no socket): the JSON shapes, each error status and the
state store's part in timelines and leases."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from pxelab.boot.render import Renderer
from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.dhcp6.leases import Lease6
from pxelab.events import Event, Timeline
from pxelab.hosts.install import HostState, InstallState, InstallStore
from pxelab.hosts.inventory import Inventory, parse_host
from pxelab.http import api
from pxelab.http.app import make_app
from pxelab.http.keys import NOTE, STATE_STORE, TIMELINE
from pxelab.state import StateStore, StoreError

MAC, OTHER = "52:54:00:aa:00:01", "52:54:00:aa:00:99"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def app(tmp_path: Path) -> web.Application:
    (tmp_path / "hosts").mkdir()
    host = {"name": "web-1", "mac": MAC, "distro": "demo", "ip": "10.0.0.7", "kernel_args": "quiet"}
    (tmp_path / "hosts" / "web-1.json").write_text(json.dumps(host))
    (tmp_path / "hosts" / "broken.json").write_text("{not json")
    return make_app(
        Inventory(tmp_path / "hosts"),
        Renderer(),
        tmp_path / "images",
        Timeline(),
        install_store=InstallStore(),
    )


class _Store:
    """The two reads of the state store the API makes; either may fail like a lost database."""

    def __init__(
        self,
        events: list[Event],
        leases: list[tuple[Lease, str]],
        fail: bool,
        leases6: list[tuple[Lease6, str]] | None = None,
    ) -> None:
        self._events, self._leases, self.fail = events, leases, fail
        self._leases6 = leases6 or []

    async def events(self, mac: str) -> list[Event]:
        if self.fail:
            raise StoreError("database away")
        return [e for e in self._events if e.mac == mac]

    async def active_leases(self, now: float) -> list[tuple[Lease, str]]:
        if self.fail:
            raise StoreError("database away")
        return self._leases

    async def active_leases6(self, now: float) -> list[tuple[Lease6, str]]:
        if self.fail:
            raise StoreError("database away")
        return self._leases6


async def _call(
    app: web.Application, handler: Handler, path: str, **match: str
) -> tuple[int, Any, web.Request]:
    request = make_mocked_request("GET", path, app=app, match_info=match)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        return exc.status, exc.text, request
    assert isinstance(response, web.Response) and response.text is not None
    return response.status, json.loads(response.text), request


def test_host_summary_shape() -> None:
    host = parse_host({"name": "h", "mac": MAC, "ip": "10.0.0.7", "distro": "demo"}, "h.json")
    last = Event(3.0, "script", mac=MAC, path="/boot")
    summary = api.host_summary(host, HostState(InstallState.INSTALLED, 2.0, "x", 1), last)
    assert summary == {
        "name": "h",
        "mac": MAC,
        "arch": "x86_64",
        "ip": "10.0.0.7",
        "distro": "demo",
        "template": "generic",
        "pxeboot": True,
        "state": "installed",
        "state_changed": 2.0,
        "stage": "script",
        "last_event": last.to_json(),
    }
    no_ip = parse_host({"name": "h", "mac": MAC}, "h.json")
    bare = api.host_summary(no_ip, HostState(InstallState.INSTALL, 0.0, "", 0), None)
    assert (bare["ip"], bare["distro"], bare["stage"], bare["last_event"]) == (None,) * 4


def test_merge_events_keeps_each_event_once_oldest_first() -> None:
    a, b, c = (Event(t, "dhcp", mac=MAC, message_type="ACK") for t in (1.0, 2.0, 3.0))
    assert api.merge_events([c, a], [b, a]) == [a, b, c]
    assert api.merge_events([], []) == []


def test_lease_json() -> None:
    lease = Lease(IPv4Address("10.0.0.9"), MAC, LeaseState.BOUND, 99.5)
    assert api.lease_json(lease, "node-a") == {
        "mac": MAC,
        "ip": "10.0.0.9",
        "state": "bound",
        "expires": 99.5,
        "instance": "node-a",
    }


async def test_list_hosts_known_unknown_and_broken(app: web.Application) -> None:
    timeline = app[TIMELINE]
    timeline.record(Event(1.0, "dhcp", mac=OTHER, message_type="OFFER"))
    timeline.record(Event(2.0, "script", mac=MAC, path="/boot"))
    status, body, _ = await _call(app, api.list_hosts, "/api/hosts")
    assert status == 200
    assert [(h["name"], h["state"], h["stage"]) for h in body["hosts"]] == [
        ("web-1", "install", "script")
    ]
    assert [(u["mac"], u["stage"]) for u in body["unknown"]] == [(OTHER, "dhcp")]
    assert len(body["broken_files"]) == 1 and "broken.json" in str(body["broken_files"])


async def test_show_host_and_its_errors(app: web.Application) -> None:
    status, body, _ = await _call(app, api.show_host, "/", mac=MAC.upper().replace(":", "-"))
    assert status == 200 and body["mac"] == MAC
    assert (body["kernel"], body["initrd"], body["kernel_args"]) == ("vmlinuz", "initrd", "quiet")
    assert body["ssh_keys"] == [] and body["source"].endswith("web-1.json")
    status, text, _ = await _call(app, api.show_host, "/", mac="not-a-mac")
    assert status == 400 and "not a MAC address" in text
    status, text, request = await _call(app, api.show_host, "/", mac=OTHER)
    assert status == 404 and text == f"no host with mac {OTHER}\n"
    assert request[NOTE] == "unknown host"


async def test_events_merge_the_store_and_survive_its_loss(app: web.Application) -> None:
    stored = Event(1.0, "dhcp", mac=MAC, message_type="ACK")
    local = app[TIMELINE].record(Event(2.0, "script", mac=MAC, path="/boot"))
    store = _Store([stored], [], fail=False)
    app[STATE_STORE] = cast(StateStore, store)
    status, body, _ = await _call(app, api.host_events, "/", mac=MAC)
    assert status == 200 and body == {"mac": MAC, "events": [stored.to_json(), local.to_json()]}
    store.fail = True  # the database is away: this instance's own events, and a note why
    status, body, request = await _call(app, api.host_events, "/", mac=MAC)
    assert status == 200 and body["events"] == [local.to_json()]
    assert request[NOTE] == "events from this instance only: database away"
    status, text, _ = await _call(app, api.host_events, "/", mac=OTHER)
    assert status == 404 and "no events from it" in text


async def test_leases_need_a_store_and_say_when_it_is_away(app: web.Application) -> None:
    status, text, _ = await _call(app, api.leases, "/api/leases")
    assert status == 404 and "no state store" in text
    lease = Lease(IPv4Address("10.0.0.9"), MAC, LeaseState.BOUND, 99.0)
    store = _Store([], [(lease, "a")], fail=False)
    app[STATE_STORE] = cast(StateStore, store)
    status, body, _ = await _call(app, api.leases, "/api/leases")
    assert status == 200 and body == {"leases": [api.lease_json(lease, "a")], "leases6": []}
    store.fail = True
    status, text, request = await _call(app, api.leases, "/api/leases")
    assert (status, text, request[NOTE]) == (503, "database away\n", "database away")


async def test_leases_list_ipv4_and_ipv6_leases(app: web.Application) -> None:
    lease = Lease(IPv4Address("10.0.0.9"), MAC, LeaseState.BOUND, 99.0, since=3.0)
    by_mac = Lease6(IPv6Address("2001:db8::1000"), MAC, 7, LeaseState.BOUND, 98.0, since=2.0)
    by_duid = Lease6(IPv6Address("2001:db8::1001"), "duid:0004ab", 1, LeaseState.DECLINED, 97.0)
    held6 = [(by_mac, "a"), (by_duid, "b")]
    app[STATE_STORE] = cast(StateStore, _Store([], [(lease, "a")], False, held6))
    status, body, _ = await _call(app, api.leases, "/api/leases")
    assert status == 200
    assert body == {
        "leases": [
            {"mac": MAC, "ip": "10.0.0.9", "state": "bound", "expires": 99.0, "instance": "a"}
        ],
        "leases6": [
            {
                "ip": "2001:db8::1000",
                "client": MAC,
                "mac": MAC,
                "iaid": 7,
                "state": "bound",
                "expires": 98.0,
                "instance": "a",
            },
            {
                "ip": "2001:db8::1001",
                "client": "duid:0004ab",
                "mac": None,  # a client known by its DUID only
                "iaid": 1,
                "state": "declined",
                "expires": 97.0,
                "instance": "b",
            },
        ],
    }


async def test_explain_refuses_an_unknown_arch(app: web.Application) -> None:
    status, body, _ = await _call(app, api.explain_host, "/api/explain", mac=MAC)
    assert status == 200 and body["host"]["mac"] == MAC
    status, text, _ = await _call(app, api.explain_host, "/api/explain?arch=vax", mac=MAC)
    assert status == 400 and "vax" in text


def test_every_route_is_registered() -> None:
    app = web.Application()
    api.add_routes(app)
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert routes == {
        ("GET", "/api/hosts"),
        ("GET", "/api/hosts/{mac}"),
        ("GET", "/api/hosts/{mac}/events"),
        ("POST", "/api/hosts/{mac}/installed"),
        ("POST", "/api/hosts/{mac}/installed/{sig}"),
        ("POST", "/api/hosts/{mac}/reinstall"),
        ("GET", "/api/explain/{mac}"),
        ("GET", "/api/leases"),
        ("HEAD", "/api/hosts"),
        ("HEAD", "/api/hosts/{mac}"),
        ("HEAD", "/api/hosts/{mac}/events"),
        ("HEAD", "/api/explain/{mac}"),
        ("HEAD", "/api/leases"),
    }

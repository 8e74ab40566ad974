"""The external boot API against small aiohttp services on loopback: a good one, one that
sleeps, one that sends garbage, one that fails with 5xx, one whose answer breaks the injection
rules. Lookups answer from memory at once; a DHCP reply never waits for the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from aiohttp import web

from pxelab.app.dhcp import fleet_observer
from pxelab.dhcp.context import DhcpContext
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode, build, parse
from pxelab.dhcp.server import start_dhcp
from pxelab.hosts.bootapi import BootApi
from pxelab.hosts.fleet import Fleet
from tests.netns import require_root

GOOD_MAC = "52:54:00:aa:00:01"
SLEEP = 5.0


async def answer(request: web.Request) -> web.StreamResponse:
    kind, mac = request.match_info["kind"], request.match_info["mac"]
    if kind == "slow":
        await asyncio.sleep(SLEEP)
    if kind == "garbage":
        return web.Response(body=b"\xff\x00{not json")
    if kind == "broken":
        return web.Response(status=503, text="down for maintenance")
    if kind == "evil":
        return web.json_response({"mac": mac, "kernel_args": "a ${net0/ip} || shell"})
    if kind == "other-mac":
        return web.json_response({"mac": "52:54:00:ff:ff:ff", "distro": "demo"})
    if mac != GOOD_MAC:
        raise web.HTTPNotFound()
    host = {"name": "api-host", "mac": mac.upper(), "distro": "demo", "kernel_args": "quiet"}
    return web.json_response(host)


@pytest.fixture
async def api() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/{kind}/{mac}", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def fleet_with(tmp_path: Path, url: str, mode: str = "fallback", timeout: float = 2.0) -> Fleet:
    fleet = Fleet(tmp_path / "hosts", tmp_path / "profiles", rescan_on_lookup=False)
    fleet.boot_api = BootApi(url, fleet.resolve, mode=mode, ttl=30, timeout=timeout)
    fleet.boot_api.start()
    return fleet


def pending(fleet: Fleet, mac: str) -> bool:
    """Whether the boot API's answer for mac is still to come (wanted or being fetched)."""
    api = fleet.boot_api
    assert api is not None
    return mac in api._in_flight or mac in api._wanted


async def settle(fleet: Fleet, mac: str, seconds: float = 30.0) -> None:
    """Wait until the background fetch for mac is done (seconds only bound a hang)."""
    deadline = time.monotonic() + seconds
    while pending(fleet, mac):
        assert time.monotonic() < deadline, f"the boot API fetch for {mac} never ended"
        await asyncio.sleep(0.02)


async def test_an_answer_is_cached_and_validated_like_a_host_file(api: str, tmp_path: Path) -> None:
    fleet = fleet_with(tmp_path, f"{api}/good")
    try:
        assert fleet.lookup(GOOD_MAC) is None  # nothing cached yet: unknown, fetch started
        await settle(fleet, GOOD_MAC)
        host = fleet.lookup(GOOD_MAC)
        assert host is not None and (host.name, host.distro) == ("api-host", "demo")
        assert fleet.by_name("api-host") is host
        assert fleet.origins(host)["distro"].startswith(f"host file boot API {api}/good/")
        assert fleet.lookup("52:54:00:aa:00:02") is None  # 404
        await settle(fleet, "52:54:00:aa:00:02")
        assert fleet.lookup("52:54:00:aa:00:02") is None
        assert fleet.boot_api is not None and fleet.boot_api.failures == 0
    finally:
        assert fleet.boot_api is not None
        await fleet.boot_api.close()


@pytest.mark.parametrize(
    ("kind", "logged"),
    [
        ("slow", "no answer within 0.3s"),
        ("garbage", "not JSON"),
        ("broken", "HTTP 503"),
        ("evil", "key 'kernel_args' must not contain ${, || or &&"),
        ("other-mac", "key 'mac': '52:54:00:ff:ff:ff' is not the MAC asked for"),
    ],
)
async def test_a_bad_api_means_unknown_logged_once(
    api: str, tmp_path: Path, kind: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pxelab.bootapi")
    fleet = fleet_with(tmp_path, f"{api}/{kind}", timeout=0.3)
    api_client = fleet.boot_api
    assert api_client is not None
    try:
        for n in range(3):
            mac = f"52:54:00:bb:00:0{n}"
            started = time.perf_counter()
            assert fleet.lookup(mac) is None
            elapsed = time.perf_counter() - started
            # Memory only, never the network: the question is left to the background task...
            assert pending(fleet, mac)
            # ...and not waited for: the API is served by this very loop, which the lookup would
            # block, so asking it would cost the whole 0.3 s timeout. (It was < 10 ms, which a
            # loaded machine's scheduler alone can exceed.)
            assert elapsed < 0.2, f"lookup took {elapsed:.3f} s"
            await settle(fleet, mac)
            assert fleet.lookup(mac) is None
        assert api_client.failures == 3
        lines = [r.getMessage() for r in caplog.records if r.name == "pxelab.bootapi"]
        assert len(lines) == 1 and logged in lines[0], lines  # once per interval
        assert "the MAC is treated as unknown" in lines[0]
    finally:
        await api_client.close()


@pytest.mark.root
async def test_a_timing_out_api_never_delays_a_dhcp_reply(api: str, tmp_path: Path) -> None:
    """`always` mode asks the API first for every MAC; it sleeps 5 s, the reply comes at once."""
    require_root()
    fleet = fleet_with(tmp_path, f"{api}/slow", mode="always", timeout=SLEEP * 2)
    relay_ip = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    ctx = DhcpContext(
        server_ip=IPv4Address("127.0.0.1"),
        network=IPv4Network("127.0.0.0/8"),
        pool_start=IPv4Address("127.0.0.100"),
        pool_end=IPv4Address("127.0.0.120"),
    )
    server = await start_dhcp(ctx, fleet, "lo", port=0, observer=fleet_observer(fleet))
    loop = asyncio.get_running_loop()
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        relay.bind((relay_ip, 67))
        relay.setblocking(False)
        for xid in range(1, 4):
            request = DhcpPacket(
                op=Op.BOOTREQUEST,
                xid=xid,
                hops=1,
                giaddr=IPv4Address(relay_ip),
                chaddr=bytes.fromhex(f"525400cc00{xid:02x}"),
                options=((OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))), (93, b"\0\7")),
            )
            started = time.perf_counter()
            await loop.sock_sendto(relay, build(request), ("127.0.0.1", server.port))
            reply = parse(await asyncio.wait_for(loop.sock_recv(relay, 2048), 30))
            elapsed = time.perf_counter() - started
            assert reply.xid == xid and reply.file == b"ipxe.efi"
            # The order of events, not a stopwatch: the reply came while the API, asked about
            # this MAC, still sleeps (it answers after SLEEP s), so the reply did not wait for it.
            mac = f"52:54:00:cc:00:{xid:02x}"
            assert pending(fleet, mac), f"reply {xid} took {elapsed:.2f}s: the API had answered"
        assert fleet.boot_api is not None
        assert len(fleet.boot_api._in_flight) == 3  # all three still asking the sleeping API
        seen = fleet.sightings.get("52:54:00:cc:00:01")
        assert seen is not None and not seen.servable and seen.firmware == "uefi"
    finally:
        relay.close()
        server.close()
        await server.wait_closed()
        assert fleet.boot_api is not None
        await fleet.boot_api.close()


def test_answers_reach_explain_json() -> None:
    from pxelab.hosts.bootapi import parse_answer

    data = parse_answer(json.dumps({"distro": "demo"}).encode(), GOOD_MAC, "u")
    assert data == {"distro": "demo", "mac": GOOD_MAC, "name": "api-525400aa0001"}

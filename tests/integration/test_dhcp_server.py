"""The DHCP adapter in this process on loopback: logging, malformed input, relay replies, close,
and a second instance sharing PostgreSQL that follows the first one's grants and releases.

Needs root (SO_BINDTODEVICE); all traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from scapy.layers.dhcp6 import (
    DUID_LL,
    DHCP6_Solicit,
    DHCP6OptClientArchType,
    DHCP6OptClientId,
    DHCP6OptIA_NA,
)

from pxelab.app.dhcp import LeaseFollower
from pxelab.dhcp.context import DhcpContext, HostInfo
from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode, build, parse
from pxelab.dhcp.server import DhcpServer, start_dhcp
from pxelab.dhcp6.context import Dhcp6Context, Host6Info
from pxelab.dhcp6.core import Dhcp6Core, Pool6
from pxelab.dhcp6.leases import Lease6Table
from pxelab.dhcp6.options import duid_ll
from pxelab.dhcp6.server import CachedHosts6, Dhcp6Server
from pxelab.events import Event, Timeline
from pxelab.http.metrics import Metrics
from pxelab.state.postgres import PostgresStore
from pxelab.state.sqlite import SqliteStore
from pxelab.testing.postgres import PostgresCluster
from tests.netns import require_root

pytestmark = pytest.mark.netns

RELAY = "127.0.0.2"
CTX = DhcpContext(
    server_ip=IPv4Address("127.0.0.1"),
    network=IPv4Network("127.0.0.0/8"),
    pool_start=IPv4Address("127.0.0.100"),
    pool_end=IPv4Address("127.0.0.120"),
    lease_time=300,
)


class NoHosts:
    def lookup(self, mac: str) -> HostInfo | None:
        return None

    def reserved(self) -> Mapping[IPv4Address, str]:
        return {}


@pytest.fixture
async def server() -> AsyncIterator[DhcpServer]:
    require_root()
    srv = await start_dhcp(CTX, NoHosts(), "lo", port=0)
    try:
        yield srv
    finally:
        srv.close()
        await srv.wait_closed()


def relay_socket(address: str = RELAY) -> socket.socket:
    """Stand in for a relay agent: replies to relayed requests go to giaddr:67."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, 67))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeError(f"{address}:67 is taken on this host; stop what holds it") from exc
        raise
    sock.setblocking(False)
    return sock


def discover(xid: int, arch: bytes = b"\x00\x07") -> bytes:
    return build(
        DhcpPacket(
            op=Op.BOOTREQUEST,
            xid=xid,
            hops=1,
            giaddr=IPv4Address(RELAY),
            chaddr=bytes.fromhex("525400cc0001"),
            options=((OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))), (93, arch)),
        )
    )


async def test_relayed_discover_is_answered_and_logged(
    server: DhcpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pxelab.dhcp")
    loop = asyncio.get_running_loop()
    with relay_socket() as relay:
        await loop.sock_sendto(relay, discover(7), ("127.0.0.1", server.port))
        data = await asyncio.wait_for(loop.sock_recv(relay, 2048), 5)
    offer = parse(data)
    assert offer.op is Op.BOOTREPLY and offer.xid == 7
    assert offer.yiaddr == IPv4Address("127.0.0.100")
    assert offer.file == b"ipxe.efi"
    assert offer.option(OptionCode.MESSAGE_TYPE) == bytes((MessageType.OFFER,))
    # the OFFER holds the address for this MAC in the table before it is sent
    lease = server.leases.get("52:54:00:cc:00:01", server.clock())
    assert lease is not None
    assert (lease.ip, lease.state) == (IPv4Address("127.0.0.100"), LeaseState.OFFERED)
    assert (
        "pxelab.dhcp",
        logging.INFO,
        "DISCOVER from 52:54:00:cc:00:01 (arch x86-64 UEFI (7)): OFFER 127.0.0.100 "
        "file=ipxe.efi to 127.0.0.2:67",
    ) in caplog.record_tuples


async def test_malformed_and_ignored_datagrams_never_stop_the_server(
    server: DhcpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pxelab.dhcp")
    loop = asyncio.get_running_loop()
    with relay_socket() as relay:
        for junk in (b"", b"\x01" * 239, b"\x00" * 300, discover(1)[:240] + b"\x35\x09"):
            await loop.sock_sendto(relay, junk, ("127.0.0.1", server.port))
        await loop.sock_sendto(relay, discover(8, arch=b"\x00\x2a"), ("127.0.0.1", server.port))
        data = await asyncio.wait_for(loop.sock_recv(relay, 2048), 5)
    offer = parse(data)
    assert offer.xid == 8 and offer.file == b""  # unknown arch: an address, no boot file
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4
    assert all(
        r.getMessage().startswith(f"malformed DHCP datagram from {RELAY}:67: ") for r in warnings
    )
    assert "magic cookie is 00000000" in warnings[2].getMessage()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    unknown = [m for m in infos if "arch unknown (42 unassigned)" in m]
    assert unknown and "unknown client architecture 42 unassigned" in unknown[0]


def port_is_free(port: int) -> bool:
    """Whether a plain socket (no SO_REUSEADDR) can bind 0.0.0.0:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE, exc
            return False
    return True


async def test_close_is_idempotent() -> None:
    require_root()
    srv = await start_dhcp(CTX, NoHosts(), "lo", port=0)
    port = srv.port
    assert not port_is_free(port)
    srv.close()
    srv.close()
    await asyncio.wait_for(srv.wait_closed(), 2)
    await asyncio.wait_for(srv.wait_closed(), 2)
    assert all(endpoint.sock.fileno() == -1 for endpoint in srv.endpoints)
    assert port_is_free(port)  # the socket is gone, not only unread


async def test_unknown_interface_is_named_in_the_error() -> None:
    require_root()
    with pytest.raises(OSError, match="interface 'nosuchif0'"):
        await start_dhcp(CTX, NoHosts(), "nosuchif0", port=0)


async def test_relayed_subnet_pool_timeline_and_store(tmp_path: Path) -> None:
    """giaddr picks the subnet; OFFER/ACK go to the timeline (ACK binds ip -> mac) and the store."""
    require_root()
    local = DhcpContext(
        server_ip=IPv4Address("127.0.0.1"),
        network=IPv4Network("127.0.0.0/24"),
        pool_start=IPv4Address("127.0.0.100"),
        pool_end=IPv4Address("127.0.0.120"),
    )
    far = DhcpContext(
        server_ip=IPv4Address("127.0.0.1"),
        network=IPv4Network("127.0.5.0/24"),
        pool_start=IPv4Address("127.0.5.10"),
        pool_end=IPv4Address("127.0.5.20"),
        router=IPv4Address("127.0.5.2"),
        relayed=True,
    )
    timeline = Timeline()
    store = SqliteStore(tmp_path / "pxelab.sqlite3")
    await store.open()
    srv = await start_dhcp(
        local, NoHosts(), "lo", port=0, relayed=[far], store=store, timeline=timeline
    )
    loop = asyncio.get_running_loop()
    mac = "52:54:00:cc:00:05"
    try:
        with relay_socket("127.0.5.2") as relay:

            async def exchange(kind: MessageType, *options: tuple[int, bytes]) -> DhcpPacket:
                request = DhcpPacket(
                    op=Op.BOOTREQUEST,
                    xid=5,
                    hops=1,
                    giaddr=IPv4Address("127.0.5.2"),
                    chaddr=bytes.fromhex(mac.replace(":", "")),
                    options=((OptionCode.MESSAGE_TYPE, bytes((kind,))), *options),
                )
                await loop.sock_sendto(relay, build(request), ("127.0.0.1", srv.port))
                return parse(await asyncio.wait_for(loop.sock_recv(relay, 2048), 5))

            offer = await exchange(MessageType.DISCOVER)
            assert offer.yiaddr == IPv4Address("127.0.5.10")
            assert offer.option(OptionCode.ROUTER) == IPv4Address("127.0.5.2").packed
            assert offer.option(OptionCode.SUBNET_MASK) == IPv4Address("255.255.255.0").packed
            ack = await exchange(
                MessageType.REQUEST,
                (50, offer.yiaddr.packed),
                (54, IPv4Address("127.0.0.1").packed),
            )
            assert ack.option(OptionCode.MESSAGE_TYPE) == bytes((MessageType.ACK,))
    finally:
        srv.close()
        await srv.wait_closed()
        await store.close()
    details = [event.detail.split()[0] for event in timeline.events(mac)]
    assert details == ["OFFER", "ACK"]
    assert timeline.mac_at("127.0.5.10") == mac
    reopened = SqliteStore(tmp_path / "pxelab.sqlite3")
    await reopened.open()
    assert [(lease.ip, lease.mac) for lease in await reopened.load_leases()] == [
        (IPv4Address("127.0.5.10"), mac)
    ]
    await reopened.close()


class RefusingStore:
    """A LeaseStore in which another instance holds one address for another MAC."""

    def __init__(self, held: Lease) -> None:
        self.held = held
        self.commits: list[list[Lease]] = []

    async def load_leases(self) -> list[Lease]:
        return []

    async def commit_leases(self, changes: Sequence[Lease], now: float) -> list[Lease]:
        self.commits.append(list(changes))
        return [self.held for lease in changes if lease.ip == self.held.ip]


async def test_a_change_the_store_refuses_is_learned_and_its_reply_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_root()
    caplog.set_level(logging.INFO, logger="pxelab.dhcp")
    held = Lease(IPv4Address("127.0.0.100"), "52:54:00:cc:00:99", LeaseState.BOUND, 2e9)
    store = RefusingStore(held)
    srv = await start_dhcp(CTX, NoHosts(), "lo", port=0, store=store)
    loop = asyncio.get_running_loop()
    try:
        with relay_socket() as relay:
            await loop.sock_sendto(relay, discover(1), ("127.0.0.1", srv.port))
            for _ in range(100):  # until the first commit was refused
                if store.commits:
                    break
                await asyncio.sleep(0.02)
            await loop.sock_sendto(relay, discover(2), ("127.0.0.1", srv.port))  # the retry
            offer = parse(await asyncio.wait_for(loop.sock_recv(relay, 2048), 5))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(loop.sock_recv(relay, 2048), 0.5)
    finally:
        srv.close()
        await srv.wait_closed()
    assert offer.xid == 2 and offer.yiaddr == IPv4Address("127.0.0.101")
    assert srv.leases.holder(held.ip, 0) == held
    assert srv.leases.get("52:54:00:cc:00:01", 0) is not None
    assert [[(c.ip, c.state) for c in batch] for batch in store.commits] == [
        [(held.ip, LeaseState.OFFERED)],
        [(IPv4Address("127.0.0.101"), LeaseState.OFFERED)],
    ]
    assert any("reply dropped: 127.0.0.100 is taken" in r.getMessage() for r in caplog.records)


async def test_a_decision_that_a_newer_binding_superseded_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another instance bound the client elsewhere after this one took its REQUEST (the client
    gave up waiting and went on): the late decision is refused, learned and not answered."""
    require_root()
    caplog.set_level(logging.INFO, logger="pxelab.dhcp")
    mac = "52:54:00:cc:00:01"
    store = SqliteStore(tmp_path / "pxelab.sqlite3")
    await store.open()
    srv = await start_dhcp(CTX, NoHosts(), "lo", port=0, store=store, clock=lambda: 100.0)
    loop = asyncio.get_running_loop()
    try:
        with relay_socket() as relay:
            await loop.sock_sendto(relay, discover(1), ("127.0.0.1", srv.port))
            offer = parse(await asyncio.wait_for(loop.sock_recv(relay, 2048), 5))
            # meanwhile, elsewhere: the same MAC bound to .105 by a decision made at 150
            newer = Lease(IPv4Address("127.0.0.105"), mac, LeaseState.BOUND, 2e9, since=150.0)
            assert await store.commit_leases([newer], now=150.0) == []
            options = (
                (OptionCode.MESSAGE_TYPE, bytes((MessageType.REQUEST,))),
                (OptionCode.REQUESTED_IP, offer.yiaddr.packed),
                (OptionCode.SERVER_ID, CTX.server_ip.packed),
            )
            request = dataclasses.replace(parse(discover(2)), options=options)
            await loop.sock_sendto(relay, build(request), ("127.0.0.1", srv.port))
            with pytest.raises(TimeoutError):  # no ACK for the address the client left
                await asyncio.wait_for(loop.sock_recv(relay, 2048), 1.0)
        assert await store.load_leases() == [newer]  # the newer binding stands
        assert srv.leases.get(mac, 100.0) == newer  # and the table learned it
    finally:
        srv.close()
        await srv.wait_closed()
        await store.close()
    assert offer.yiaddr == IPv4Address("127.0.0.100")
    dropped = f"reply dropped: {mac} has a newer binding, 127.0.0.105, in the lease store"
    assert any(dropped in r.getMessage() for r in caplog.records)


def relayed(kind: MessageType, mac: str, xid: int, *options: tuple[int, bytes]) -> bytes:
    """A relayed request of `kind` from `mac`, with these options besides its type."""
    return build(
        DhcpPacket(
            op=Op.BOOTREQUEST,
            xid=xid,
            hops=1,
            giaddr=IPv4Address(RELAY),
            chaddr=bytes.fromhex(mac.replace(":", "")),
            options=((OptionCode.MESSAGE_TYPE, bytes((kind,))), *options),
        )
    )


async def test_an_address_released_through_one_instance_is_offered_by_the_other_at_once(
    pg_cluster: PostgresCluster,
) -> None:
    """Two instances share PostgreSQL; the second follows the first's lease writes (NOTIFY):
    it learns A's binding and offers the next address, then learns A's RELEASE and offers the
    released address again, without waiting for the lease to expire."""
    require_root()
    url = pg_cluster.create_database()
    one, two = PostgresStore(url, instance="one"), PostgresStore(url, instance="two")
    await one.open()
    await two.open()
    first = await start_dhcp(CTX, NoHosts(), "lo", port=0, store=one)
    second = await start_dhcp(CTX, NoHosts(), "lo", port=0, store=two)
    follower = LeaseFollower(two, "lease", second.learn, two.load_leases)
    loop = asyncio.get_running_loop()
    a, b, c = "52:54:00:cc:00:0a", "52:54:00:cc:00:0b", "52:54:00:cc:00:0c"
    address = IPv4Address("127.0.0.100")
    server_id = (OptionCode.SERVER_ID, CTX.server_ip.packed)

    async def ask(server: DhcpServer, data: bytes) -> DhcpPacket:
        await loop.sock_sendto(relay, data, ("127.0.0.1", server.port))
        return parse(await asyncio.wait_for(loop.sock_recv(relay, 2048), 5))

    async def until(check: Callable[[], bool], what: str) -> None:
        deadline = loop.time() + 10
        while not check():
            assert loop.time() < deadline, f"the second instance never learned {what}"
            await asyncio.sleep(0.02)

    try:
        with relay_socket() as relay:
            offer = await ask(first, relayed(MessageType.DISCOVER, a, 1))
            assert offer.yiaddr == address
            requested = (OptionCode.REQUESTED_IP, address.packed)
            ack = await ask(first, relayed(MessageType.REQUEST, a, 2, requested, server_id))
            assert ack.option(OptionCode.MESSAGE_TYPE) == bytes((MessageType.ACK,))
            bound = first.leases.get(a, first.clock())
            assert bound is not None and bound.state is LeaseState.BOUND
            await until(lambda: second.leases.holder(address, second.clock()) == bound, "A's ACK")
            # the second instance offers the next address, even to a client asking for A's
            asked = (OptionCode.REQUESTED_IP, address.packed)
            other = await ask(second, relayed(MessageType.DISCOVER, b, 3, asked))
            assert other.yiaddr == IPv4Address("127.0.0.101")
            # A releases its address through the first instance (no reply to a RELEASE)
            release = DhcpPacket(
                op=Op.BOOTREQUEST,
                xid=4,
                hops=1,
                giaddr=IPv4Address(RELAY),
                ciaddr=address,
                chaddr=bytes.fromhex(a.replace(":", "")),
                options=((OptionCode.MESSAGE_TYPE, bytes((MessageType.RELEASE,))), server_id),
            )
            await loop.sock_sendto(relay, build(release), ("127.0.0.1", first.port))
            await until(lambda: second.leases.holder(address, second.clock()) is None, "the FREE")
            assert bound.expires > second.clock() + 200  # long before the lease would expire
            again = await ask(second, relayed(MessageType.DISCOVER, c, 5, asked))
            assert again.yiaddr == address
            assert await two.load_leases() == []  # the store freed it (offers are not stored)
    finally:
        follower.close()
        await follower.wait_closed()
        for server in (first, second):
            server.close()
            await server.wait_closed()
        await one.close()
        await two.close()


class BrokenHosts(NoHosts):
    """An inventory that fails for one MAC: stands in for a bug in the core."""

    def lookup(self, mac: str) -> HostInfo | None:
        if mac == "52:54:00:cc:00:01":
            raise RuntimeError(f"bug while looking up {mac}")
        return None


async def test_a_bug_in_the_core_is_logged_once_counted_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    require_root()
    timeline = Timeline()
    metrics = Metrics()
    timeline.subscribe(metrics.on_event)
    srv = await start_dhcp(CTX, BrokenHosts(), "lo", port=0, timeline=timeline)
    loop = asyncio.get_running_loop()
    good = DhcpPacket(**{**parse(discover(9)).__dict__, "chaddr": bytes.fromhex("525400cc0002")})
    try:
        with relay_socket() as relay:
            for xid in (7, 8):
                await loop.sock_sendto(relay, discover(xid), ("127.0.0.1", srv.port))
            await loop.sock_sendto(relay, build(good), ("127.0.0.1", srv.port))
            offer = parse(await asyncio.wait_for(loop.sock_recv(relay, 2048), 5))
    finally:
        srv.close()
        await srv.wait_closed()
    assert offer.xid == 9 and offer.mac == "52:54:00:cc:00:02"
    assert srv.errors == 2
    tracebacks = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(tracebacks) == 1 and tracebacks[0].exc_info is not None
    assert "DISCOVER from 52:54:00:cc:00:01" in tracebacks[0].getMessage()
    assert "bug while looking up" in caplog.text
    errors = [e for e in timeline.events("52:54:00:cc:00:01") if e.stage == "error"]
    assert len(errors) == 2 and errors[0].detail.startswith("DHCP: DISCOVER from 52:54:00:cc:00:01")
    # counted under DHCP's own label in what /metrics serves, as prometheus_client parses it
    assert error_counts(metrics) == {"dhcp": 2.0}


def error_counts(metrics: Metrics) -> dict[str, float]:
    """`pxelab_errors_total` by service (non-zero only), parsed from the /metrics text."""
    return {
        sample.labels["service"]: sample.value
        for family in text_string_to_metric_families(metrics.text().decode())
        for sample in family.samples
        if sample.name == "pxelab_errors_total" and sample.value
    }


class BrokenHosts6:
    """An IPv6 inventory that fails for every client: stands in for a bug in the DHCPv6 core."""

    def lookup(self, mac: str) -> Host6Info | None:
        raise RuntimeError(f"bug while looking up {mac}")

    def reserved6(self) -> Mapping[IPv6Address, str]:
        return {}


async def test_a_bug_in_the_dhcp6_core_is_counted_under_dhcp6() -> None:
    timeline = Timeline()
    metrics = Metrics()
    timeline.subscribe(metrics.on_event)
    recorded: list[Event] = []
    timeline.subscribe(recorded.append)
    prefix = IPv6Network("fd00:77::/64")
    ctx = Dhcp6Context(
        server_duid=duid_ll(bytes.fromhex("020000000001")),
        server_ip=IPv6Address("fd00:77::1"),
        prefix=prefix,
        pool_start=IPv6Address("fd00:77::100"),
        pool_end=IPv6Address("fd00:77::1ff"),
    )
    pool = Pool6(ctx, Lease6Table(ctx.pool_start, ctx.pool_end), "lo")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 0))
    sock.setblocking(False)
    core = Dhcp6Core([pool], CachedHosts6(BrokenHosts6()))
    srv = Dhcp6Server(core, sock, "lo", None, lambda: 1000.0, timeline)
    solicit = bytes(
        DHCP6_Solicit(trid=7)
        / DHCP6OptClientId(duid=DUID_LL(lladdr="52:54:00:cc:00:06"))
        / DHCP6OptClientArchType(archtypes=[7])
        / DHCP6OptIA_NA(iaid=1)
    )
    try:
        for _ in range(2):
            srv.datagram_received(solicit, "::1", 546)
    finally:
        srv.close()
        await srv.wait_closed()
    assert srv.errors == 2
    errors = [e for e in recorded if e.stage == "error"]
    assert [e.service for e in errors] == ["dhcp6", "dhcp6"], errors
    assert errors[0].detail.startswith("DHCPv6: deciding on a message from [::1]:546 failed")
    assert error_counts(metrics) == {"dhcp6": 2.0}

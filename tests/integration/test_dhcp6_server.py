"""The DHCPv6 adapter in this process on loopback, with the state store: a decision the store
refuses because the client's IA was bound anew elsewhere is dropped, and a second instance sharing
PostgreSQL learns the first one's grants as they are made (NOTIFY), so it never offers them, and
its releases, so it offers those addresses again at once.

Needs root (SO_BINDTODEVICE, port 546); all traffic stays on ::1.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import cast

import pytest

from pxelab.app.config import build_config
from pxelab.app.dhcp import LeaseFollower
from pxelab.app.dhcp6 import start_ipv6
from pxelab.dhcp.leases import LeaseState
from pxelab.dhcp6.context import Dhcp6Context, Host6Info
from pxelab.dhcp6.leases import Lease6
from pxelab.dhcp6.options import IaAddress, IaNa, build_ia_na, build_iaaddr, duid_ll, parse_ia_na
from pxelab.dhcp6.packet import Dhcp6Message, MessageType, OptionCode, build, parse
from pxelab.dhcp6.server import Dhcp6Server, Lease6Store, start_dhcp6
from pxelab.state import Change
from pxelab.state.postgres import PostgresStore
from pxelab.state.sqlite import SqliteStore
from pxelab.testing.postgres import PostgresCluster
from tests.netns import require_root

pytestmark = pytest.mark.netns

SERVER_DUID = duid_ll(bytes.fromhex("020000000001"))
PREFIX = IPv6Network("2001:db8:77::/64")
CTX = Dhcp6Context(
    server_duid=SERVER_DUID,
    server_ip=IPv6Address("2001:db8:77::1"),
    prefix=PREFIX,
    pool_start=IPv6Address("2001:db8:77::1000"),
    pool_end=IPv6Address("2001:db8:77::10ff"),
    lease_time=300,
)
A, B = "52:54:00:cc:00:01", "52:54:00:cc:00:02"


class NoHosts:
    def lookup(self, mac: str) -> Host6Info | None:
        return None

    def reserved6(self) -> Mapping[IPv6Address, str]:
        return {}


def message(
    kind: MessageType,
    mac: str,
    xid: int,
    hint: IPv6Address | None = None,
    server: bytes = SERVER_DUID,
) -> bytes:
    """A client message for IA 1 of `mac` (a DUID-LL), with the server id when it needs one."""
    sub = ((OptionCode.IAADDR, build_iaaddr(IaAddress(hint, 0, 0))),) if hint else ()
    options = [(OptionCode.CLIENTID, duid_ll(bytes.fromhex(mac.replace(":", ""))))]
    if kind is not MessageType.SOLICIT:
        options.append((OptionCode.SERVERID, server))
    options.append((OptionCode.IA_NA, build_ia_na(IaNa(1, 0, 0, sub))))
    return build(Dhcp6Message(kind, xid, tuple(options)))


def granted(data: bytes) -> tuple[MessageType, list[IPv6Address]]:
    """A reply's type and the addresses its IA_NA gives."""
    reply = parse(data)
    assert isinstance(reply, Dhcp6Message)
    value = reply.option(OptionCode.IA_NA)
    assert value is not None
    return reply.msg_type, [a.address for a in parse_ia_na(value).addresses() if a.valid]


@pytest.fixture
def client() -> socket.socket:
    """Stand in for a client on ::1: direct replies go to the sender's address, port 546."""
    require_root()
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 546))
    sock.setblocking(False)
    return sock


async def ask(client: socket.socket, server: Dhcp6Server, data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(client, data, ("::1", server.port))
    return await asyncio.wait_for(loop.sock_recv(client, 4096), 5)


async def serving(store: Lease6Store, clock: Callable[[], float]) -> Dhcp6Server:
    return await start_dhcp6(CTX, NoHosts(), "lo", port=0, store=store, clock=clock)


async def closed(server: Dhcp6Server) -> None:
    server.close()
    await server.wait_closed()


async def test_a_decision_that_a_newer_binding_superseded_is_dropped(
    tmp_path: Path, client: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """Another instance bound the client's IA elsewhere after this one took its REQUEST (the
    client gave up waiting and went on): the late decision is refused, learned and not answered."""
    caplog.set_level(logging.INFO, logger="pxelab.dhcp6")
    store = SqliteStore(tmp_path / "pxelab.sqlite3")
    await store.open()
    srv = await serving(store, lambda: 100.0)
    try:
        kind, offered = granted(await ask(client, srv, message(MessageType.SOLICIT, A, 1)))
        assert (kind, offered) == (MessageType.ADVERTISE, [CTX.pool_start])
        # meanwhile, elsewhere: the same IA bound to ::1005 by a decision made at 150
        newer = Lease6(IPv6Address("2001:db8:77::1005"), A, 1, LeaseState.BOUND, 2e9, since=150)
        assert await store.commit_leases6([newer], 150) == []
        with pytest.raises(TimeoutError):  # no REPLY for the address the client left
            await ask(client, srv, message(MessageType.REQUEST, A, 2, offered[0]))
        assert await store.load_leases6() == [newer]  # the newer binding stands
        assert srv.pools[0].leases.get(A, 1, 100.0) == newer  # and the table learned it
    finally:
        client.close()
        await closed(srv)
        await store.close()
    dropped = f"reply dropped: {A} IA 1 has a newer binding, {newer.ip}, in the lease store"
    assert any(dropped in r.getMessage() for r in caplog.records), caplog.text


@pytest.fixture
async def two_instances(pg_cluster: PostgresCluster) -> AsyncIterator[tuple[PostgresStore, ...]]:
    url = pg_cluster.create_database()
    one, two = PostgresStore(url, instance="one"), PostgresStore(url, instance="two")
    await one.open()
    await two.open()
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()


async def test_a_second_instance_learns_an_ipv6_grant_by_notify_and_never_offers_it(
    two_instances: tuple[PostgresStore, PostgresStore], client: socket.socket
) -> None:
    one, two = two_instances
    srv = await serving(two, time.time)
    follower = LeaseFollower(two, "lease6", srv.learn, two.load_leases6)
    try:
        # instance one binds A's IA 1 to the first address of the pool, which two would offer
        now = time.time()
        lease = Lease6(CTX.pool_start, A, 1, LeaseState.BOUND, now + 300, since=now)
        assert await one.commit_leases6([lease], now) == []
        deadline = time.monotonic() + 5
        while srv.pools[0].leases.holder(CTX.pool_start, time.time()) != lease:
            assert time.monotonic() < deadline, "instance two never learned the grant"
            await asyncio.sleep(0.02)
        # so two offers B the next address, and A what one gave it, with no refusal
        kind, offered = granted(await ask(client, srv, message(MessageType.SOLICIT, B, 1)))
        assert (kind, offered) == (MessageType.ADVERTISE, [IPv6Address("2001:db8:77::1001")])
        kind, offered = granted(await ask(client, srv, message(MessageType.SOLICIT, A, 2)))
        assert (kind, offered) == (MessageType.ADVERTISE, [CTX.pool_start])
        # A renews through two: the store takes it (same client and IA), and one's listeners
        # hear it with the lease, which is what one's follower would learn
        heard: list[Change] = []
        one.subscribe(heard.append)
        kind, bound = granted(
            await ask(client, srv, message(MessageType.RENEW, A, 3, CTX.pool_start))
        )
        assert (kind, bound) == (MessageType.REPLY, [CTX.pool_start])
        deadline = time.monotonic() + 5
        while not heard:
            assert time.monotonic() < deadline, "instance one never heard the renewal"
            await asyncio.sleep(0.02)
        renewed = heard[0].lease
        assert [(c.kind, c.key, c.remote) for c in heard] == [("lease6", A, True)]
        assert isinstance(renewed, Lease6) and renewed.since > lease.since
        assert (renewed.ip, renewed.client, renewed.iaid) == (lease.ip, A, 1)
        assert [instance for _, instance in await one.active_leases6(time.time())] == ["two"]
    finally:
        client.close()
        follower.close()
        await follower.wait_closed()
        await closed(srv)


async def test_instances_sharing_a_database_follow_each_others_ipv6_grants(
    two_instances: tuple[PostgresStore, PostgresStore], client: socket.socket
) -> None:
    """The daemon's wiring (`start_ipv6` with `state_url`): each instance searches its own part
    of the pool, and what one binds the other learns at once."""
    one, two = two_instances
    settings = {"interface": "lo", "ipv6_prefix": "::/64", "router_advertisements": False}
    config = build_config(settings, {"state_url": "postgresql:///shared"})
    services = [await start_ipv6(config, 8080, NoHosts(), store, port=0) for store in (one, two)]
    servers = cast(list[Dhcp6Server], [service.parts[0] for service in services])
    assert all(isinstance(server, Dhcp6Server) for server in servers)
    first, second = servers
    duid = first.pools[0].ctx.server_duid
    try:
        starts = {server.pools[0].leases.choose(B, 1, 0, {}, None) for server in servers}
        assert len(starts) == 2  # each starts its search at its own point of the pool
        _, [offered] = granted(await ask(client, first, message(MessageType.SOLICIT, A, 1)))
        kind, [bound] = granted(
            await ask(client, first, message(MessageType.REQUEST, A, 2, offered, duid))
        )
        assert (kind, bound) == (MessageType.REPLY, offered)
        deadline = time.monotonic() + 5
        while (held := second.pools[0].leases.holder(bound, time.time())) is None:
            assert time.monotonic() < deadline, "the second instance never learned the grant"
            await asyncio.sleep(0.02)
        assert (held.client, held.iaid, held.state) == (A, 1, LeaseState.BOUND)
        assert second.pools[0].leases.choose(B, 1, time.time(), {}, None, [bound]) != bound
    finally:
        client.close()
        for service in services:
            service.close()
            await service.wait_closed()


async def test_an_ipv6_address_released_through_one_instance_is_offered_by_the_other_at_once(
    two_instances: tuple[PostgresStore, PostgresStore], client: socket.socket
) -> None:
    """The daemon's wiring: A's RELEASE through the first instance reaches the second by
    NOTIFY, which frees the address in its table and advertises it again, long before the
    lease would have expired."""
    one, two = two_instances
    settings = {"interface": "lo", "ipv6_prefix": "::/64", "router_advertisements": False}
    config = build_config(settings, {"state_url": "postgresql:///shared"})
    services = [await start_ipv6(config, 8080, NoHosts(), store, port=0) for store in (one, two)]
    first, second = cast(list[Dhcp6Server], [service.parts[0] for service in services])
    duid = first.pools[0].ctx.server_duid
    try:
        _, [offered] = granted(await ask(client, first, message(MessageType.SOLICIT, A, 1)))
        kind, [bound] = granted(
            await ask(client, first, message(MessageType.REQUEST, A, 2, offered, duid))
        )
        assert (kind, bound) == (MessageType.REPLY, offered)
        deadline = time.monotonic() + 10
        while (held := second.pools[0].leases.holder(bound, time.time())) is None:
            assert time.monotonic() < deadline, "the second instance never learned the grant"
            await asyncio.sleep(0.02)
        assert (held.client, held.iaid, held.state) == (A, 1, LeaseState.BOUND)
        _, [other] = granted(await ask(client, second, message(MessageType.SOLICIT, B, 3, bound)))
        assert other != bound  # held: B is offered another address despite its hint
        release = await ask(client, first, message(MessageType.RELEASE, A, 4, bound, duid))
        assert parse(release).msg_type is MessageType.REPLY
        while second.pools[0].leases.holder(bound, time.time()) is not None:
            assert time.monotonic() < deadline + 10, "the second instance never learned the FREE"
            await asyncio.sleep(0.02)
        assert held.expires > time.time() + 200  # long before the lease would expire
        c = "52:54:00:cc:00:03"  # B keeps its offer; a third client asks for the freed address
        _, [again] = granted(await ask(client, second, message(MessageType.SOLICIT, c, 5, bound)))
        assert again == bound
    finally:
        client.close()
        for service in services:
            service.close()
            await service.wait_closed()

"""The pure DHCP core as tables: the subnet for a request (giaddr, interface), where replies go
(RFC 2131 §4.1, proxyDHCP on 4011), the expiry sweep, the lease changes each decision returns,
and taking in a lease granted elsewhere (learn)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from pxelab.dhcp.context import DhcpContext, DhcpMode, Sender
from pxelab.dhcp.leases import Lease, LeaseState, LeaseTable
from pxelab.dhcp.packet import BROADCAST_FLAG, DhcpPacket, MessageType, Op, OptionCode
from pxelab.dhcp.policy import DhcpCore, Pool
from pxelab.dhcp.reply import DhcpReply, NoReply
from tests.unit.test_dhcp_policy import HOSTS, KNOWN, OTHER, STRANGER, arch

SERVER = IPv4Address("10.0.0.1")
LOCAL = DhcpContext(
    server_ip=SERVER,
    network=IPv4Network("10.0.0.0/24"),
    pool_start=IPv4Address("10.0.0.100"),
    pool_end=IPv4Address("10.0.0.101"),
    lease_time=600,
)
SECOND = DhcpContext(
    server_ip=IPv4Address("10.2.0.1"),
    network=IPv4Network("10.2.0.0/24"),
    pool_start=IPv4Address("10.2.0.100"),
    pool_end=IPv4Address("10.2.0.101"),
)
FAR = DhcpContext(
    server_ip=SERVER,
    network=IPv4Network("10.1.0.0/24"),
    pool_start=IPv4Address("10.1.0.10"),
    pool_end=IPv4Address("10.1.0.11"),
    relayed=True,
)
PROXY = DhcpContext(
    server_ip=SERVER,
    network=IPv4Network("10.0.0.0/24"),
    pool_start=SERVER,
    pool_end=SERVER,
    mode=DhcpMode.PROXY,
)
THIRD = "52:54:00:00:00:97"
PXE = {93: arch(7), 60: b"PXEClient:Arch:00007:UNDI:003016"}


def pool(ctx: DhcpContext, interface: str | None) -> Pool:
    leases = LeaseTable(ctx.pool_start, ctx.pool_end, server_ip=ctx.server_ip, offer_hold=30)
    return Pool(ctx, leases, interface)


def core(*pools: Pool) -> DhcpCore:
    return DhcpCore(pools or (pool(LOCAL, "eth0"), pool(SECOND, "eth1"), pool(FAR, None)), HOSTS)


def packet(
    kind: MessageType,
    mac: str = STRANGER,
    *,
    giaddr: str = "0.0.0.0",
    ciaddr: str = "0.0.0.0",
    flags: int = 0,
    options: dict[int, bytes] | None = None,
) -> DhcpPacket:
    return DhcpPacket(
        op=Op.BOOTREQUEST,
        xid=3,
        flags=flags,
        ciaddr=IPv4Address(ciaddr),
        giaddr=IPv4Address(giaddr),
        chaddr=bytes.fromhex(mac.replace(":", "")),
        options=((OptionCode.MESSAGE_TYPE, bytes((kind,))), *(options or {}).items()),
    )


def sender(interface: str = "eth0", address: str = "0.0.0.0", port: int = 68) -> Sender:
    return Sender(address, port, interface)


def request_for(offer: DhcpReply, server: IPv4Address = SERVER) -> DhcpPacket:
    return packet(
        MessageType.REQUEST,
        offer.packet.mac,
        options={50: offer.packet.yiaddr.packed, 54: server.packed},
    )


def reply(outcome: DhcpReply | NoReply) -> DhcpReply:
    assert isinstance(outcome, DhcpReply), outcome
    return outcome


# -- which subnet ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("giaddr", "interface", "expected"),
    [
        ("0.0.0.0", "eth0", "10.0.0.100"),  # direct: the receiving interface's subnet
        ("0.0.0.0", "eth1", "10.2.0.100"),
        ("10.1.0.1", "eth0", "10.1.0.10"),  # relayed: giaddr's subnet, whatever the interface
        ("10.1.0.1", "eth1", "10.1.0.10"),
        ("10.2.0.254", "eth0", "10.2.0.100"),  # a relay on a directly served subnet
        ("10.9.0.1", "eth0", "relayed by 10.9.0.1, which is in no configured subnet"),
        ("0.0.0.0", "eth9", "arrived on eth9, which serves no subnet"),
    ],
)
def test_the_subnet_is_chosen_by_giaddr_else_by_interface(
    giaddr: str, interface: str, expected: str
) -> None:
    outcome = core().handle(packet(MessageType.DISCOVER, giaddr=giaddr), sender(interface), 0)
    if isinstance(outcome, DhcpReply):
        assert str(outcome.packet.yiaddr) == expected
    else:
        assert outcome.reason == expected and outcome.changes == ()


# -- where the reply goes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "build", "destination", "link_unicast"),
    [
        ("relayed", lambda: packet(MessageType.DISCOVER, giaddr="10.0.0.254"), ("10.0.0.254", 67), False),
        ("broadcast flag", lambda: packet(MessageType.DISCOVER, flags=BROADCAST_FLAG), ("255.255.255.255", 68), False),
        ("ciaddr", lambda: packet(MessageType.INFORM, ciaddr="10.0.0.77", flags=BROADCAST_FLAG), ("10.0.0.77", 68), False),
        ("unicast to yiaddr", lambda: packet(MessageType.DISCOVER), ("10.0.0.100", 68), True),
        ("NAK, direct", lambda: packet(MessageType.REQUEST, options={50: IPv4Address("10.5.0.1").packed}), ("255.255.255.255", 68), False),
        ("NAK, relayed", lambda: packet(MessageType.REQUEST, giaddr="10.0.0.254", options={50: IPv4Address("10.5.0.1").packed}), ("10.0.0.254", 67), False),
    ],
)  # fmt: skip
def test_reply_destinations_rfc2131_4_1(
    case: str, build: object, destination: tuple[str, int], link_unicast: bool
) -> None:
    assert callable(build)
    out = reply(core().handle(build(), sender(), 0))
    assert (out.destination, out.link_unicast) == (destination, link_unicast), case


@pytest.mark.parametrize(
    ("server_port", "giaddr", "ciaddr", "destination"),
    [
        (4011, "0.0.0.0", "10.0.0.77", ("10.0.0.77", 1234)),  # the request's source (PXE spec)
        (4011, "0.0.0.0", "0.0.0.0", ("10.0.0.77", 1234)),
        (4011, "10.0.0.254", "10.0.0.77", ("10.0.0.254", 67)),  # the relay first
        (67, "0.0.0.0", "0.0.0.0", ("255.255.255.255", 68)),
    ],
)
def test_proxy_replies_go_to_the_relay_the_source_on_4011_else_broadcast(
    server_port: int, giaddr: str, ciaddr: str, destination: tuple[str, int]
) -> None:
    kind = MessageType.REQUEST if server_port == 4011 else MessageType.DISCOVER
    request = packet(kind, giaddr=giaddr, ciaddr=ciaddr, options=PXE)
    source = Sender("10.0.0.77", 1234, "eth0", server_port)
    out = reply(core(pool(PROXY, "eth0")).handle(request, source, 0))
    assert out.destination == destination and out.changes == ()


# -- the lease changes each decision returns -------------------------------------------------


def test_each_decision_returns_the_lease_changes_it_made() -> None:
    the_core = core(pool(LOCAL, "eth0"))
    ip = IPv4Address("10.0.0.100")
    offer = reply(the_core.handle(packet(MessageType.DISCOVER), sender(), 0))
    assert offer.changes == (Lease(ip, STRANGER, LeaseState.OFFERED, 30),)
    again = reply(the_core.handle(packet(MessageType.DISCOVER), sender(), 1))
    assert again.changes == (Lease(ip, STRANGER, LeaseState.OFFERED, 31, since=1),)  # extended
    ack = reply(the_core.handle(request_for(offer), sender(), 2))
    assert ack.changes == (Lease(ip, STRANGER, LeaseState.BOUND, 602, since=2),)
    rediscover = reply(the_core.handle(packet(MessageType.DISCOVER), sender(), 3))
    assert rediscover.packet.yiaddr == ip and rediscover.changes == ()  # bound: nothing changes
    inform = reply(the_core.handle(packet(MessageType.INFORM, ciaddr=str(ip)), sender(), 4))
    assert inform.changes == ()
    release = the_core.handle(packet(MessageType.RELEASE, ciaddr=str(ip)), sender(), 5)
    freed = Lease(ip, STRANGER, LeaseState.FREE, 5, since=2)  # the record the ACK at 2 wrote
    assert release == NoReply(f"released {ip}", (freed,))
    offer = reply(the_core.handle(packet(MessageType.DISCOVER, OTHER), sender(), 6))
    decline = the_core.handle(
        packet(MessageType.DECLINE, OTHER, options={50: offer.packet.yiaddr.packed}), sender(), 7
    )
    assert isinstance(decline, NoReply)
    assert decline.changes == (
        Lease(offer.packet.yiaddr, OTHER, LeaseState.DECLINED, 607, since=7),
    )


def test_a_request_for_another_server_withdraws_our_offer_rfc2131_3_1_4() -> None:
    the_core = core(pool(LOCAL, "eth0"))
    offer = reply(the_core.handle(packet(MessageType.DISCOVER), sender(), 0))
    ip = offer.packet.yiaddr
    elsewhere = the_core.handle(request_for(offer, IPv4Address("10.0.0.2")), sender(), 1)
    assert elsewhere == NoReply(
        "REQUEST for server 10.0.0.2, not this one", (Lease(ip, STRANGER, LeaseState.FREE, 1),)
    )
    assert the_core.pools[0].leases.holder(ip, 1) is None
    # The address is free at once, not only after the hold: with a pool of two, two more
    # clients get offers.
    other = reply(the_core.handle(packet(MessageType.DISCOVER, OTHER), sender(), 2))
    third = reply(the_core.handle(packet(MessageType.DISCOVER, THIRD), sender(), 2))
    assert {other.packet.yiaddr, third.packet.yiaddr} == {ip, IPv4Address("10.0.0.101")}
    # A bound client that asks another server keeps its binding (only offers are withdrawn).
    ack = reply(the_core.handle(request_for(other), sender(), 3))
    again = the_core.handle(request_for(ack, IPv4Address("10.0.0.2")), sender(), 4)
    assert isinstance(again, NoReply) and again.changes == ()
    assert the_core.pools[0].leases.get(OTHER, 4) is not None


# -- the expiry sweep ------------------------------------------------------------------------


def test_the_sweep_runs_every_expire_every_seconds_and_its_changes_come_first() -> None:
    local, far = pool(LOCAL, "eth0"), pool(FAR, None)
    the_core = DhcpCore([local, far], HOSTS, expire_every=60)
    the_core.sweep(0)  # the first request sweeps; nothing to collect yet
    local.leases.bind(OTHER, IPv4Address("10.0.0.101"), 0, 10, reserved={})
    far.leases.bind(KNOWN, IPv4Address("10.1.0.11"), 0, 100, reserved={})
    early = reply(the_core.handle(packet(MessageType.DISCOVER), sender(), 40))
    assert [lease.state for lease in early.changes] == [LeaseState.OFFERED]  # not due yet
    due = reply(the_core.handle(packet(MessageType.DISCOVER, KNOWN), sender(), 60))
    assert due.changes == (
        Lease(IPv4Address("10.0.0.101"), OTHER, LeaseState.FREE, 10),
        Lease(IPv4Address("10.0.0.50"), KNOWN, LeaseState.OFFERED, 90, since=60),
    )
    assert far.leases.get(KNOWN, 60) is not None  # still bound there
    assert the_core.sweep(119) == []  # next one at 120
    assert the_core.sweep(120) == [
        Lease(IPv4Address("10.0.0.100"), STRANGER, LeaseState.FREE, 70, since=40),
        Lease(IPv4Address("10.0.0.50"), KNOWN, LeaseState.FREE, 90, since=60),
        Lease(IPv4Address("10.1.0.11"), KNOWN, LeaseState.FREE, 100),
    ]


def test_a_sweep_on_a_request_that_gets_no_reply_still_returns_its_changes() -> None:
    local = pool(LOCAL, "eth0")
    local.leases.bind(OTHER, IPv4Address("10.0.0.101"), 0, 10, reserved={})
    outcome = core(local).handle(packet(MessageType.REQUEST), sender(), 100)
    assert outcome == NoReply(
        "REQUEST names no address (neither option 50 nor ciaddr)",
        (Lease(IPv4Address("10.0.0.101"), OTHER, LeaseState.FREE, 10),),
    )


# -- learn: a lease granted elsewhere --------------------------------------------------------


def test_learn_replaces_what_the_table_had_for_the_address_and_the_mac() -> None:
    table = LeaseTable(IPv4Address("10.0.0.100"), IPv4Address("10.0.0.103"))
    a, b = IPv4Address("10.0.0.100"), IPv4Address("10.0.0.101")
    ours = table.offer(STRANGER, 0, reserved={})
    assert ours is not None and ours.lease.ip == a
    table.bind(OTHER, b, 0, 600, reserved={})
    # Elsewhere, OTHER was given `a`: our offer on it and OTHER's old address here both go.
    theirs = Lease(a, OTHER, LeaseState.BOUND, 900)
    assert table.learn(theirs) == [ours.lease, Lease(b, OTHER, LeaseState.BOUND, 600)]
    assert table.holder(a, 1) == theirs and table.get(OTHER, 1) == theirs
    assert table.get(STRANGER, 1) is None and table.holder(b, 1) is None
    assert table.learn(theirs) == []  # learning it again changes nothing
    # Our client asks again and is offered another address.
    again = table.offer(STRANGER, 2, reserved={})
    assert again is not None and again.lease.ip not in (a,)


def test_core_learn_goes_to_the_subnet_of_the_address() -> None:
    local, far = pool(LOCAL, "eth0"), pool(FAR, None)
    the_core = core(local, far)
    held = Lease(IPv4Address("10.1.0.10"), OTHER, LeaseState.BOUND, 500)
    assert the_core.learn(held) == []
    assert far.leases.get(OTHER, 0) == held and local.leases.leases() == []
    assert the_core.learn(Lease(IPv4Address("10.9.9.9"), OTHER, LeaseState.BOUND, 1)) == []
    offer = reply(the_core.handle(packet(MessageType.DISCOVER, giaddr="10.1.0.1"), sender(), 1))
    assert offer.packet.yiaddr == IPv4Address("10.1.0.11")  # .10 is taken elsewhere


def test_core_learns_a_free_elsewhere_and_offers_the_address_again() -> None:
    far = pool(FAR, None)
    the_core = core(pool(LOCAL, "eth0"), far)
    held = Lease(IPv4Address("10.1.0.10"), OTHER, LeaseState.BOUND, 500, since=3)
    the_core.learn(held)
    # OTHER released it through the other instance: the FREE names the record decided at 3.
    assert the_core.learn(Lease(held.ip, OTHER, LeaseState.FREE, 4, since=3)) == [held]
    assert far.leases.leases() == []
    offer = reply(the_core.handle(packet(MessageType.DISCOVER, giaddr="10.1.0.1"), sender(), 5))
    assert offer.packet.yiaddr == held.ip  # free again, without waiting for 500

"""DHCP decisions as tables: boot file per client, reservations, pool, NAK, release, expiry."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import pytest

from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp.context import DhcpContext, UnknownMacs
from pxelab.dhcp.leases import LeaseState, LeaseTable
from pxelab.dhcp.packet import (
    BROADCAST_FLAG,
    DhcpPacket,
    MessageType,
    Op,
    OptionCode,
    build,
    parse,
)
from pxelab.dhcp.policy import decide, evaluate
from pxelab.dhcp.reply import DhcpReply, NoReply, describe_arch
from pxelab.errors import ConfigError

SERVER = IPv4Address("10.0.0.1")
KNOWN = "52:54:00:00:00:01"  # reserved 10.0.0.50
NOBOOT = "52:54:00:00:00:02"  # reserved 10.0.0.51, pxeboot false
STRANGER = "52:54:00:00:00:99"  # not in the inventory
OTHER = "52:54:00:00:00:98"
BROADCAST = ("255.255.255.255", 68)
IPXE_URL = "http://10.0.0.1:8080/boot.ipxe"


@dataclass(frozen=True)
class FakeHost:
    name: str
    mac: str
    ip: IPv4Address | None
    pxeboot: bool = True
    loader: str | None = None
    secure_boot: bool = False


class FakeInventory:
    def __init__(self, *hosts: FakeHost) -> None:
        self.hosts = {h.mac: h for h in hosts}

    def lookup(self, mac: str) -> FakeHost | None:
        return self.hosts.get(mac.lower())

    def reserved(self) -> Mapping[IPv4Address, str]:
        return {h.ip: h.mac for h in self.hosts.values() if h.ip is not None}


HOSTS = FakeInventory(
    FakeHost("known", KNOWN, IPv4Address("10.0.0.50")),
    FakeHost("noboot", NOBOOT, IPv4Address("10.0.0.51"), pxeboot=False),
)


def context(**overrides: object) -> DhcpContext:
    fields: dict[str, object] = {
        "server_ip": SERVER,
        "network": IPv4Network("10.0.0.0/24"),
        "pool_start": IPv4Address("10.0.0.100"),
        "pool_end": IPv4Address("10.0.0.109"),
        "router": IPv4Address("10.0.0.254"),
        "dns": (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")),
        "lease_time": 600,
        "http_port": 8080,
    }
    fields.update(overrides)
    return DhcpContext(**fields)  # type: ignore[arg-type]


CTX = context()


def table(ctx: DhcpContext = CTX) -> LeaseTable:
    return LeaseTable(ctx.pool_start, ctx.pool_end, server_ip=ctx.server_ip, offer_hold=30)


def request(
    kind: MessageType,
    mac: str = STRANGER,
    *,
    options: Mapping[int, bytes] | None = None,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    flags: int = 0,
) -> DhcpPacket:
    return DhcpPacket(
        op=Op.BOOTREQUEST,
        xid=0x1234,
        flags=flags,
        ciaddr=IPv4Address(ciaddr),
        giaddr=IPv4Address(giaddr),
        chaddr=bytes.fromhex(mac.replace(":", "")),
        options=((OptionCode.MESSAGE_TYPE, bytes((kind,))), *(options or {}).items()),
    )


def arch(code: int) -> bytes:
    return struct.pack("!H", code)


def reply_to(packet: DhcpPacket, leases: LeaseTable | None = None, now: float = 0) -> DhcpReply:
    outcome = evaluate(packet, CTX, HOSTS, leases or table(), now)
    assert isinstance(outcome, DhcpReply), outcome
    # Everything we decide must survive our own codec.
    assert parse(build(outcome.packet)) == outcome.packet
    return outcome


def no_reply(packet: DhcpPacket, leases: LeaseTable | None = None, now: float = 0) -> str:
    outcome = evaluate(packet, CTX, HOSTS, leases or table(), now)
    assert isinstance(outcome, NoReply), outcome
    assert decide(packet, CTX, HOSTS, leases or table(), now) is None
    return outcome.reason


def kind_of(packet: DhcpPacket) -> MessageType:
    value = packet.option(OptionCode.MESSAGE_TYPE)
    assert value is not None
    return MessageType(value[0])


# -- which boot file ---------------------------------------------------------------------------

PXE60: dict[int, bytes] = {OptionCode.VENDOR_CLASS_ID: b"PXEClient:Arch:00000:UNDI:002001"}
HTTP60: dict[int, bytes] = {OptionCode.VENDOR_CLASS_ID: b"HTTPClient:Arch:00016:UNDI:003001"}


@pytest.mark.parametrize(
    ("mac", "options", "file", "http_client"),
    [
        pytest.param(STRANGER, {93: arch(0), **PXE60}, "undionly.kpxe", False, id="bios"),
        pytest.param(STRANGER, PXE60, "undionly.kpxe", False, id="pxeclient-without-93"),
        pytest.param(STRANGER, {93: arch(7)}, "ipxe.efi", False, id="uefi-x64-7"),
        pytest.param(STRANGER, {93: arch(9)}, "ipxe.efi", False, id="uefi-x64-9"),
        pytest.param(STRANGER, {93: arch(11)}, "ipxe-arm64.efi", False, id="uefi-arm64"),
        pytest.param(STRANGER, {93: arch(42) + arch(7)}, "ipxe.efi", False, id="first-known"),
        pytest.param(
            STRANGER,
            {93: arch(16), **HTTP60},
            "http://10.0.0.1:8080/tftp/ipxe.efi",
            True,
            id="uefi-http-x64",
        ),
        pytest.param(
            STRANGER,
            {93: arch(19)},
            "http://10.0.0.1:8080/tftp/ipxe-arm64.efi",
            True,
            id="uefi-http-arm64",
        ),
        pytest.param(STRANGER, {93: arch(7), 77: b"iPXE"}, IPXE_URL, False, id="ipxe-77"),
        pytest.param(STRANGER, {93: arch(7), 175: b"\x13\x01\x01"}, IPXE_URL, False, id="ipxe-175"),
        pytest.param(STRANGER, {93: arch(0), 77: b"\x04iPXE"}, IPXE_URL, False, id="ipxe-rfc3004"),
        pytest.param(STRANGER, {93: arch(42)}, None, False, id="unknown-arch"),
        pytest.param(STRANGER, {93: b"\x07"}, None, False, id="bad-93"),
        pytest.param(STRANGER, {93: arch(6)}, None, False, id="uefi-ia32-unconfigured"),
        pytest.param(STRANGER, {60: b"udhcp 1.36.1"}, None, False, id="not-pxe"),
        pytest.param(STRANGER, {}, None, False, id="plain"),
        pytest.param(KNOWN, {93: arch(7)}, "ipxe.efi", False, id="known-host"),
        pytest.param(NOBOOT, {93: arch(7)}, None, False, id="pxeboot-false"),
        pytest.param(NOBOOT, {93: arch(7), 77: b"iPXE"}, None, False, id="pxeboot-false-ipxe"),
    ],
)
def test_boot_file_per_client(
    mac: str, options: dict[int, bytes], file: str | None, http_client: bool
) -> None:
    reply = reply_to(request(MessageType.DISCOVER, mac, options=options))
    packet = reply.packet
    assert kind_of(packet) is MessageType.OFFER
    assert packet.yiaddr != IPv4Address(0)  # an address always, boot file or not
    assert packet.siaddr == SERVER
    if file is None:
        assert packet.option(OptionCode.BOOTFILE_NAME) is None
        assert packet.option(OptionCode.TFTP_SERVER_NAME) is None
        assert packet.file == b""
        assert reply.note  # the log says why there is no boot file
    else:
        assert packet.option(OptionCode.BOOTFILE_NAME) == file.encode()
        assert packet.file == file.encode()
        assert packet.option(OptionCode.TFTP_SERVER_NAME) == b"10.0.0.1"
    echoed = packet.option(OptionCode.VENDOR_CLASS_ID)
    assert echoed == (b"HTTPClient" if http_client else None)


def test_unknown_arch_is_noted_for_the_log() -> None:
    discover = request(MessageType.DISCOVER, options={93: arch(42)})
    assert "unknown client architecture 42" in reply_to(discover).note
    assert describe_arch(discover) == "unknown (42 unassigned)"
    assert describe_arch(request(MessageType.DISCOVER, options={93: arch(9)})) == "x86-64 UEFI (9)"
    assert describe_arch(request(MessageType.DISCOVER)) == "none"


def test_configured_boot_files_and_long_names() -> None:
    long_name = "x" * 130
    ctx = context(boot_files=BootFiles(uefi_x64="snponly.efi", uefi_ia32=long_name))
    leases = table(ctx)
    out = evaluate(request(MessageType.DISCOVER, options={93: arch(7)}), ctx, HOSTS, leases, 0)
    assert isinstance(out, DhcpReply) and out.packet.file == b"snponly.efi"
    out = evaluate(request(MessageType.DISCOVER, options={93: arch(6)}), ctx, HOSTS, leases, 0)
    assert isinstance(out, DhcpReply)
    assert out.packet.option(OptionCode.BOOTFILE_NAME) == long_name.encode()
    assert out.packet.file == b""  # does not fit the 128-byte field: option 67 only


# -- addresses and options ---------------------------------------------------------------------


def test_offer_carries_the_network_options() -> None:
    packet = reply_to(request(MessageType.DISCOVER, KNOWN, flags=BROADCAST_FLAG)).packet
    assert packet.op is Op.BOOTREPLY
    assert packet.xid == 0x1234 and packet.flags == BROADCAST_FLAG
    assert packet.chaddr[:6] == bytes.fromhex("525400000001")
    assert packet.ciaddr == IPv4Address(0)
    assert packet.options[0] == (OptionCode.MESSAGE_TYPE, bytes((MessageType.OFFER,)))
    assert packet.option(OptionCode.SERVER_ID) == SERVER.packed
    assert packet.option(OptionCode.LEASE_TIME) == struct.pack("!I", 600)
    assert packet.option(OptionCode.SUBNET_MASK) == bytes((255, 255, 255, 0))
    assert packet.option(OptionCode.ROUTER) == bytes((10, 0, 0, 254))
    assert packet.option(OptionCode.DNS_SERVERS) == bytes((10, 0, 0, 1, 10, 0, 0, 2))


def test_no_router_and_no_dns_send_no_options() -> None:
    ctx = context(router=None, dns=())
    out = evaluate(request(MessageType.DISCOVER), ctx, HOSTS, table(ctx), 0)
    assert isinstance(out, DhcpReply)
    assert out.packet.option(OptionCode.ROUTER) is None
    assert out.packet.option(OptionCode.DNS_SERVERS) is None


def test_reservation_versus_pool() -> None:
    leases = table()
    assert reply_to(request(MessageType.DISCOVER, KNOWN), leases).packet.yiaddr == IPv4Address(
        "10.0.0.50"
    )
    stranger = reply_to(request(MessageType.DISCOVER, STRANGER), leases).packet
    assert stranger.yiaddr == IPv4Address("10.0.0.100")
    # Asking for the reserved address of another host does not get it.
    asks = request(MessageType.DISCOVER, OTHER, options={50: IPv4Address("10.0.0.50").packed})
    assert reply_to(asks, leases).packet.yiaddr == IPv4Address("10.0.0.101")


def test_pool_exhaustion_is_ignored_with_a_reason() -> None:
    ctx = context(pool_start=IPv4Address("10.0.0.100"), pool_end=IPv4Address("10.0.0.100"))
    leases = table(ctx)
    assert isinstance(evaluate(request(MessageType.DISCOVER), ctx, HOSTS, leases, 0), DhcpReply)
    out = evaluate(request(MessageType.DISCOVER, OTHER), ctx, HOSTS, leases, 1)
    assert out == NoReply("no free address in pool 10.0.0.100-10.0.0.100")


def test_full_exchange_binds_and_acks() -> None:
    leases = table()
    offer = reply_to(request(MessageType.DISCOVER, options={93: arch(7)}), leases, now=0).packet
    req = request(
        MessageType.REQUEST,
        options={50: offer.yiaddr.packed, 54: SERVER.packed, 93: arch(7)},
    )
    ack = reply_to(req, leases, now=1)
    assert kind_of(ack.packet) is MessageType.ACK
    assert ack.packet.yiaddr == offer.yiaddr
    assert ack.packet.file == b"ipxe.efi"
    # No broadcast flag, no ciaddr: unicast to yiaddr, by chaddr (RFC 2131 §4.1).
    assert ack.destination == (str(offer.yiaddr), 68) and ack.link_unicast
    held = leases.get(STRANGER, 2)
    assert held is not None and held.state is LeaseState.BOUND and held.expires == 601


def test_renewal_is_unicast_to_ciaddr() -> None:
    leases = table()
    leases.bind(STRANGER, IPv4Address("10.0.0.105"), 0, 600, reserved={})
    ack = reply_to(request(MessageType.REQUEST, ciaddr="10.0.0.105"), leases, now=300)
    assert kind_of(ack.packet) is MessageType.ACK
    assert ack.packet.ciaddr == ack.packet.yiaddr == IPv4Address("10.0.0.105")
    assert ack.destination == ("10.0.0.105", 68)
    assert leases.get(STRANGER, 800) is not None


@pytest.mark.parametrize(
    ("mac", "requested", "why"),
    [
        (KNOWN, "10.0.0.105", "52:54:00:00:00:01 is reserved 10.0.0.50, not 10.0.0.105"),
        (KNOWN, "192.168.1.5", "192.168.1.5 is not on network 10.0.0.0/24"),
        (STRANGER, "10.0.0.50", "10.0.0.50 is not available"),
        (STRANGER, "10.0.0.1", "10.0.0.1 is not available"),
        (STRANGER, "10.0.0.20", "10.0.0.20 is not available"),  # outside the pool
        (STRANGER, "192.168.1.5", "192.168.1.5 is not on network 10.0.0.0/24"),
    ],
)
def test_wrong_requested_address_is_nakked(mac: str, requested: str, why: str) -> None:
    """SELECTING (server id is ours) for an address that cannot be given, or a wrong network."""
    options = {50: IPv4Address(requested).packed, 54: SERVER.packed}
    nak = reply_to(request(MessageType.REQUEST, mac, options=options))
    assert kind_of(nak.packet) is MessageType.NAK
    assert nak.destination == BROADCAST
    assert nak.packet.yiaddr == nak.packet.siaddr == nak.packet.ciaddr == IPv4Address(0)
    assert nak.packet.option(OptionCode.SERVER_ID) == SERVER.packed
    assert nak.packet.option(OptionCode.LEASE_TIME) is None
    message = nak.packet.option(OptionCode.MESSAGE)
    assert message is not None and why in message.decode()


def test_address_held_by_another_client_is_nakked() -> None:
    leases = table()
    leases.bind(OTHER, IPv4Address("10.0.0.105"), 0, 600, reserved={})
    nak = reply_to(request(MessageType.REQUEST, ciaddr="10.0.0.105"), leases, now=1)
    assert kind_of(nak.packet) is MessageType.NAK


def test_request_for_another_server_is_ignored_and_frees_our_offer() -> None:
    leases = table()
    offer = reply_to(request(MessageType.DISCOVER), leases).packet
    req = request(
        MessageType.REQUEST,
        options={50: offer.yiaddr.packed, 54: IPv4Address("10.0.0.2").packed},
    )
    assert no_reply(req, leases, now=1) == "REQUEST for server 10.0.0.2, not this one"
    assert leases.holder(offer.yiaddr, 1) is None


def test_request_without_any_address_is_ignored() -> None:
    assert "names no address" in no_reply(request(MessageType.REQUEST))


def test_relayed_requests_go_back_to_the_relay() -> None:
    offer = reply_to(request(MessageType.DISCOVER, giaddr="10.0.0.254"))
    assert offer.destination == ("10.0.0.254", 67)
    assert offer.packet.giaddr == IPv4Address("10.0.0.254")
    nak = reply_to(
        request(
            MessageType.REQUEST,
            giaddr="10.0.0.254",
            options={50: IPv4Address("10.0.0.9").packed, 54: SERVER.packed},
        )
    )
    assert nak.destination == ("10.0.0.254", 67)
    assert nak.packet.flags & BROADCAST_FLAG
    reason = no_reply(request(MessageType.DISCOVER, giaddr="192.168.7.1"))
    assert reason == "relayed by 192.168.7.1, outside 10.0.0.0/24"


def test_release_frees_the_address() -> None:
    leases = table()
    leases.bind(STRANGER, IPv4Address("10.0.0.105"), 0, 600, reserved={})
    release = request(MessageType.RELEASE, ciaddr="10.0.0.105", options={54: SERVER.packed})
    assert no_reply(request(MessageType.RELEASE, OTHER, ciaddr="10.0.0.105"), leases, 1) == (
        "RELEASE of 10.0.0.105, which 52:54:00:00:00:98 does not hold"
    )
    assert no_reply(release, leases, 1) == "released 10.0.0.105"
    assert leases.get(STRANGER, 1) is None
    assert leases.holder(IPv4Address("10.0.0.105"), 1) is None


def test_decline_holds_the_address_back() -> None:
    leases = table()
    leases.bind(STRANGER, IPv4Address("10.0.0.100"), 0, 600, reserved={})
    decline = request(MessageType.DECLINE, options={50: IPv4Address("10.0.0.100").packed})
    assert "declined" in no_reply(decline, leases, 1)
    again = reply_to(request(MessageType.DISCOVER), leases, now=2).packet
    assert again.yiaddr == IPv4Address("10.0.0.101")


def test_inform_gets_options_without_an_address() -> None:
    ack = reply_to(request(MessageType.INFORM, ciaddr="10.0.0.77", options={93: arch(7)}))
    assert kind_of(ack.packet) is MessageType.ACK
    assert ack.packet.yiaddr == IPv4Address(0)
    assert ack.packet.option(OptionCode.LEASE_TIME) is None
    assert ack.packet.file == b"ipxe.efi"
    assert ack.destination == ("10.0.0.77", 68)


def test_lease_expiry_with_fake_now() -> None:
    ctx = context(pool_end=IPv4Address("10.0.0.100"), lease_time=60)
    leases = table(ctx)

    def run(packet: DhcpPacket, now: float) -> DhcpReply | NoReply:
        return evaluate(packet, ctx, HOSTS, leases, now)

    ip = IPv4Address("10.0.0.100").packed
    assert isinstance(run(request(MessageType.DISCOVER), 0), DhcpReply)
    assert isinstance(run(request(MessageType.REQUEST, options={50: ip}), 1), DhcpReply)
    assert isinstance(run(request(MessageType.DISCOVER, OTHER), 30), NoReply)
    assert isinstance(run(request(MessageType.DISCOVER, OTHER), 60), NoReply)
    offer = run(request(MessageType.DISCOVER, OTHER), 61)
    assert isinstance(offer, DhcpReply) and offer.packet.yiaddr == IPv4Address("10.0.0.100")
    nak = run(request(MessageType.REQUEST, ciaddr="10.0.0.100"), 62)  # the old client renews late
    assert isinstance(nak, DhcpReply) and kind_of(nak.packet) is MessageType.NAK


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (DhcpPacket(op=Op.BOOTREPLY, xid=1, chaddr=b"\1" * 6), "a BOOTREPLY, not a client request"),
        (DhcpPacket(op=Op.BOOTREQUEST, xid=1, chaddr=b"\1" * 6), "no message type (option 53)"),
        (DhcpPacket(op=Op.BOOTREQUEST, xid=1, hlen=0, chaddr=b""), "no hardware address"),
        (request(MessageType.OFFER), "OFFER is a server message"),
        (request(MessageType.DISCOVER, options={50: b"\1"}), "malformed: option 50 is 1 bytes"),
        (
            DhcpPacket(op=Op.BOOTREQUEST, xid=1, chaddr=b"\1" * 6, options=((53, b"\x0c"),)),
            "malformed: message type (option 53) 12",
        ),
    ],
    ids=["bootreply", "bootp", "no-chaddr", "offer", "bad-50", "bad-53"],
)
def test_ignored_requests_say_why(packet: DhcpPacket, reason: str) -> None:
    assert no_reply(packet).startswith(reason)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"server_ip": IPv4Address("10.1.0.1")}, "dhcp server_ip 10.1.0.1 is not in network"),
        ({"pool_end": IPv4Address("10.0.1.5")}, "dhcp pool_end 10.0.1.5 is not in network"),
        ({"pool_end": IPv4Address("10.0.0.90")}, "is before pool_start"),
        ({"pool_end": IPv4Address("10.0.0.255")}, "holds 10.0.0.255"),
        ({"lease_time": 0}, "lease_time 0"),
        ({"http_port": 70000}, "http_port 70000"),
    ],
)
def test_context_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        context(**overrides)


# -- RFC 2131 §4.3.2 REQUEST states ---------------------------------------------------------------

A105 = IPv4Address("10.0.0.105")


def bound(mac: str = STRANGER, ip: IPv4Address = A105) -> LeaseTable:
    leases = table()
    assert leases.bind(mac, ip, 0, 600, reserved={}) is not None
    return leases


def outcome_of(packet: DhcpPacket, leases: LeaseTable, now: float = 10) -> str:
    """ "ACK", "NAK" or "silent", for the state tables below."""
    result = evaluate(packet, CTX, HOSTS, leases, now)
    if isinstance(result, NoReply):
        return "silent"
    return kind_of(result.packet).name


P50 = OptionCode.REQUESTED_IP
WRONG = IPv4Address("10.0.0.106")


@pytest.mark.parametrize(
    ("state", "leases", "packet", "expected"),
    [
        # INIT-REBOOT: option 50, no server id, no ciaddr
        ("init-reboot, own lease", bound, request(MessageType.REQUEST, options={P50: A105.packed}), "ACK"),
        ("init-reboot, other address", bound, request(MessageType.REQUEST, options={P50: WRONG.packed}), "NAK"),
        ("init-reboot, wrong network", table, request(MessageType.REQUEST, options={P50: IPv4Address("10.9.0.5").packed}), "NAK"),
        ("init-reboot, unknown client", table, request(MessageType.REQUEST, options={P50: A105.packed}), "silent"),
        ("init-reboot, address of another", lambda: bound(OTHER), request(MessageType.REQUEST, options={P50: A105.packed}), "NAK"),
        ("init-reboot, reservation", table, request(MessageType.REQUEST, KNOWN, options={P50: IPv4Address("10.0.0.50").packed}), "ACK"),
        ("init-reboot, not the reservation", table, request(MessageType.REQUEST, KNOWN, options={P50: A105.packed}), "NAK"),
        # RENEWING: ciaddr, unicast
        ("renewing, own lease", bound, request(MessageType.REQUEST, ciaddr="10.0.0.105"), "ACK"),
        ("renewing, unknown client", table, request(MessageType.REQUEST, ciaddr="10.0.0.105"), "silent"),
        ("renewing, other address", bound, request(MessageType.REQUEST, ciaddr="10.0.0.106"), "NAK"),
        # REBINDING: ciaddr, broadcast
        ("rebinding, own lease", bound, request(MessageType.REQUEST, ciaddr="10.0.0.105", flags=BROADCAST_FLAG), "ACK"),
        ("rebinding, unknown client", table, request(MessageType.REQUEST, ciaddr="10.0.0.105", flags=BROADCAST_FLAG), "silent"),
        ("rebinding, other network", table, request(MessageType.REQUEST, ciaddr="10.9.0.5", flags=BROADCAST_FLAG), "silent"),
        # SELECTING: our server id
        ("selecting, free pool address", table, request(MessageType.REQUEST, options={P50: A105.packed, 54: SERVER.packed}), "ACK"),
        ("selecting, taken address", lambda: bound(OTHER), request(MessageType.REQUEST, options={P50: A105.packed, 54: SERVER.packed}), "NAK"),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else "",
)  # fmt: skip
def test_request_states(
    state: str, leases: Callable[[], LeaseTable], packet: DhcpPacket, expected: str
) -> None:
    assert outcome_of(packet, leases()) == expected, state


@pytest.mark.parametrize(
    ("ciaddr", "giaddr", "flags", "destination", "link"),
    [
        ("0.0.0.0", "0.0.0.0", 0, ("10.0.0.100", 68), True),
        ("0.0.0.0", "0.0.0.0", BROADCAST_FLAG, ("255.255.255.255", 68), False),
        ("10.0.0.100", "0.0.0.0", BROADCAST_FLAG, ("10.0.0.100", 68), False),
        ("0.0.0.0", "10.0.0.254", BROADCAST_FLAG, ("10.0.0.254", 67), False),
    ],
)
def test_reply_destinations_follow_rfc2131_4_1(
    ciaddr: str, giaddr: str, flags: int, destination: tuple[str, int], link: bool
) -> None:
    offer = reply_to(request(MessageType.DISCOVER, ciaddr=ciaddr, giaddr=giaddr, flags=flags))
    assert offer.destination == destination
    assert offer.link_unicast is link
    assert len(build(offer.packet)) >= 300  # padded for RFC 1542 relays and old PXE ROMs


def test_unknown_macs_ignore_answers_only_the_inventory() -> None:
    ctx = context(unknown_macs=UnknownMacs.IGNORE)
    stranger = evaluate(request(MessageType.DISCOVER), ctx, HOSTS, table(), 0)
    assert isinstance(stranger, NoReply) and "not in the inventory" in stranger.reason
    known = evaluate(request(MessageType.DISCOVER, KNOWN), ctx, HOSTS, table(), 0)
    assert isinstance(known, DhcpReply) and known.packet.yiaddr == IPv4Address("10.0.0.50")


def test_option_60_architecture_when_option_93_is_missing() -> None:
    vendor: dict[int, bytes] = {OptionCode.VENDOR_CLASS_ID: b"PXEClient:Arch:00007:UNDI:003016"}
    assert reply_to(request(MessageType.DISCOVER, options=vendor)).packet.file == b"ipxe.efi"
    both = {**vendor, 93: arch(0)}
    offer = reply_to(request(MessageType.DISCOVER, options=both))
    assert offer.packet.file == b"undionly.kpxe" and "option 93 wins" in offer.note

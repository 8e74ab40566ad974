"""proxyDHCP decisions: PXE clients only, no address, options 60/43/97, ports 67 and 4011."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from pxelab.dhcp.context import DhcpContext, DhcpMode, UnknownMacs
from pxelab.dhcp.leases import LeaseTable
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode, build, parse
from pxelab.dhcp.policy import evaluate
from pxelab.dhcp.reply import DhcpReply, NoReply
from tests.unit.test_dhcp_policy import HOSTS, KNOWN, NOBOOT, STRANGER, arch

SERVER = IPv4Address("10.0.0.1")
PROXY = DhcpContext(
    server_ip=SERVER,
    network=IPv4Network("10.0.0.0/24"),
    pool_start=SERVER,
    pool_end=SERVER,
    http_port=8080,
    mode=DhcpMode.PROXY,
)
UUID = b"\x00" + bytes(range(16))
PXE = {93: arch(7), 60: b"PXEClient:Arch:00007:UNDI:003016", 97: UUID}


def packet(
    kind: MessageType, mac: str = STRANGER, ciaddr: str = "0.0.0.0", **opts: bytes
) -> DhcpPacket:
    options = {int(k.lstrip("o")): v for k, v in opts.items()}
    return DhcpPacket(
        op=Op.BOOTREQUEST,
        xid=9,
        ciaddr=IPv4Address(ciaddr),
        chaddr=bytes.fromhex(mac.replace(":", "")),
        options=((53, bytes((kind,))), *options.items()),
    )


def pxe(kind: MessageType, mac: str = STRANGER, ciaddr: str = "0.0.0.0") -> DhcpPacket:
    p = packet(kind, mac, ciaddr)
    return DhcpPacket(**{**p.__dict__, "options": (*p.options, *PXE.items())})


def run(p: DhcpPacket, port: int = 67, ctx: DhcpContext = PROXY) -> DhcpReply | NoReply:
    leases = LeaseTable(SERVER, SERVER)
    outcome = evaluate(p, ctx, HOSTS, leases, 0, port=port)
    assert leases.leases() == []  # proxy mode never touches leases
    if isinstance(outcome, DhcpReply):
        assert parse(build(outcome.packet)) == outcome.packet
    return outcome


def test_discover_gets_boot_information_and_no_address() -> None:
    offer = run(pxe(MessageType.DISCOVER))
    assert isinstance(offer, DhcpReply)
    p = offer.packet
    assert p.option(OptionCode.MESSAGE_TYPE) == bytes((MessageType.OFFER,))
    assert p.yiaddr == IPv4Address(0) and p.siaddr == SERVER
    assert p.option(OptionCode.VENDOR_CLASS_ID) == b"PXEClient"
    assert p.option(OptionCode.VENDOR_SPECIFIC) == b"\x06\x01\x08\xff"
    assert p.option(OptionCode.CLIENT_UUID) == UUID
    assert p.file == b"ipxe.efi" and p.option(OptionCode.BOOTFILE_NAME) == b"ipxe.efi"
    for absent in (OptionCode.LEASE_TIME, OptionCode.SUBNET_MASK, OptionCode.ROUTER):
        assert p.option(absent) is None
    assert offer.destination == ("255.255.255.255", 68)


def test_request_on_4011_gets_an_ack_to_the_client() -> None:
    ack = run(pxe(MessageType.REQUEST, ciaddr="10.0.0.77"), port=4011)
    assert isinstance(ack, DhcpReply)
    assert ack.packet.option(OptionCode.MESSAGE_TYPE) == bytes((MessageType.ACK,))
    assert ack.packet.ciaddr == IPv4Address("10.0.0.77") and ack.packet.yiaddr == IPv4Address(0)
    assert ack.destination == ("10.0.0.77", 68)


def test_http_client_gets_a_url_and_httpclient_echoed() -> None:
    p = packet(MessageType.DISCOVER, o93=arch(16), o60=b"HTTPClient:Arch:00016:UNDI:003001")
    offer = run(p)
    assert isinstance(offer, DhcpReply)
    assert offer.packet.option(OptionCode.VENDOR_CLASS_ID) == b"HTTPClient"
    assert offer.packet.option(OptionCode.BOOTFILE_NAME) == b"http://10.0.0.1:8080/tftp/ipxe.efi"


@pytest.mark.parametrize(
    ("request_packet", "port", "reason"),
    [
        (packet(MessageType.DISCOVER, o93=arch(7)), 67, "not a PXE or HTTP boot client"),
        (pxe(MessageType.REQUEST), 67, "REQUEST on port 67 is for the DHCP server"),
        (pxe(MessageType.DISCOVER), 4011, "DISCOVER on port 4011"),
        (pxe(MessageType.DISCOVER, NOBOOT), 67, "pxeboot is off"),
        (packet(MessageType.DISCOVER, o60=b"PXEClient:Arch:00042:UNDI:003016"), 67, "unknown"),
    ],
)
def test_what_proxy_mode_leaves_alone(request_packet: DhcpPacket, port: int, reason: str) -> None:
    outcome = run(request_packet, port)
    assert isinstance(outcome, NoReply) and reason in outcome.reason


def test_unknown_macs_ignore() -> None:
    ctx = DhcpContext(**{**PROXY.__dict__, "unknown_macs": UnknownMacs.IGNORE})
    assert isinstance(run(pxe(MessageType.DISCOVER), ctx=ctx), NoReply)
    assert isinstance(run(pxe(MessageType.DISCOVER, KNOWN), ctx=ctx), DhcpReply)


def test_full_mode_does_not_serve_port_4011() -> None:
    full = DhcpContext(**{**PROXY.__dict__, "mode": DhcpMode.FULL})
    outcome = run(pxe(MessageType.REQUEST, ciaddr="10.0.0.77"), port=4011, ctx=full)
    assert isinstance(outcome, NoReply) and "only served in proxy mode" in outcome.reason

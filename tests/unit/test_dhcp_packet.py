"""The DHCP codec: round-trips, malformed input, RFC 3396 joining, overload, and scapy agreement."""

from __future__ import annotations

import contextlib
import re
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP

from pxelab.dhcp.options import client_arch_codes, ip_option, is_ipxe, message_type
from pxelab.dhcp.packet import (
    HEADER,
    MAGIC_COOKIE,
    DhcpPacket,
    MessageType,
    Op,
    OptionCode,
    build,
    parse,
)
from pxelab.errors import MalformedPacket

MAC = bytes.fromhex("525400123456")

addresses = st.integers(0, 2**32 - 1).map(IPv4Address)
option_codes = st.integers(1, 254).filter(lambda c: c != OptionCode.OVERLOAD)
no_trailing_nul = st.binary(max_size=64).map(lambda b: b.rstrip(b"\0"))

packets = st.builds(
    DhcpPacket,
    op=st.sampled_from(Op),
    htype=st.integers(0, 255),
    hlen=st.integers(0, 16),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 65535),
    flags=st.integers(0, 65535),
    ciaddr=addresses,
    yiaddr=addresses,
    siaddr=addresses,
    giaddr=addresses,
    chaddr=st.binary(min_size=16, max_size=16),
    sname=no_trailing_nul,
    file=st.binary(max_size=128).map(lambda b: b.rstrip(b"\0")),
    options=st.dictionaries(option_codes, st.binary(max_size=600), max_size=12).map(
        lambda d: tuple(d.items())
    ),
)


def header(**fields: object) -> bytes:
    """A 240-byte header with the magic cookie; keyword fields override the defaults."""
    values: dict[str, object] = {
        "op": 1, "htype": 1, "hlen": 6, "hops": 0, "xid": 1, "secs": 0, "flags": 0,
        "ciaddr": bytes(4), "yiaddr": bytes(4), "siaddr": bytes(4), "giaddr": bytes(4),
        "chaddr": MAC, "sname": b"", "file": b"", "cookie": MAGIC_COOKIE,
    }  # fmt: skip
    values.update(fields)
    return HEADER.pack(*values.values())


@given(packets)
@settings(max_examples=300)
def test_parse_inverts_build(packet: DhcpPacket) -> None:
    data = build(packet)
    assert len(data) >= 300
    assert parse(data) == packet


@given(packets)
@settings(max_examples=200)
def test_build_is_stable_across_a_round_trip(packet: DhcpPacket) -> None:
    data = build(packet)
    assert build(parse(data)) == data


def padded(data: bytes) -> bytes:
    """`data` padded with zeros to the 300 bytes `build` sends at least."""
    return data + bytes(max(0, 300 - len(data)))


ADDR = IPv4Address
EXAMPLES: list[tuple[str, bytes, DhcpPacket]] = [
    (
        "PXE DISCOVER",
        padded(
            header(xid=0x12345678, flags=0x8000)
            + bytes((53, 1, 1, 93, 2, 0, 7, 60, 9))
            + b"PXEClient"
            + b"\xff"
        ),
        DhcpPacket(
            op=Op.BOOTREQUEST,
            xid=0x12345678,
            flags=0x8000,
            chaddr=MAC,
            options=((53, b"\x01"), (93, b"\x00\x07"), (60, b"PXEClient")),
        ),
    ),
    (
        "relayed OFFER with a boot file",
        padded(
            header(
                op=2,
                hops=1,
                yiaddr=ADDR("10.1.0.10").packed,
                siaddr=ADDR("10.0.0.1").packed,
                giaddr=ADDR("10.1.0.1").packed,
                file=b"ipxe.efi".ljust(128, b"\0"),
            )
            + bytes((53, 1, 2, 54, 4, 10, 0, 0, 1, 51, 4, 0, 0, 0x0E, 0x10))
            + bytes((67, 8))
            + b"ipxe.efi"
            + b"\xff"
        ),
        DhcpPacket(
            op=Op.BOOTREPLY,
            hops=1,
            xid=1,
            yiaddr=ADDR("10.1.0.10"),
            siaddr=ADDR("10.0.0.1"),
            giaddr=ADDR("10.1.0.1"),
            chaddr=MAC,
            file=b"ipxe.efi",
            options=((53, b"\x02"), (54, ADDR("10.0.0.1").packed), (51, b"\x00\x00\x0e\x10"),
                     (67, b"ipxe.efi")),
        ),
    ),
    (
        "RENEWING REQUEST, longer than 300 bytes",
        header(ciaddr=ADDR("10.0.0.5").packed) + bytes((53, 1, 3, 12, 100)) + b"h" * 100 + b"\xff",
        DhcpPacket(
            op=Op.BOOTREQUEST,
            xid=1,
            ciaddr=ADDR("10.0.0.5"),
            chaddr=MAC,
            options=((53, b"\x03"), (12, b"h" * 100)),
        ),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("case", "wire", "packet"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_examples_parse_and_build_exactly(case: str, wire: bytes, packet: DhcpPacket) -> None:
    assert parse(wire) == packet, case
    assert build(packet) == wire, case


@given(st.binary(max_size=700))
@settings(max_examples=500)
def test_random_bytes_raise_only_malformed_packet(data: bytes) -> None:
    with contextlib.suppress(MalformedPacket):
        parse(data)


@given(st.binary(max_size=400), st.integers(0, 255))
@settings(max_examples=500)
def test_random_options_raise_only_malformed_packet(tail: bytes, overload: int) -> None:
    """Valid header and cookie, then garbage: exercises the option scanner and overload."""
    for data in (header() + tail, header() + bytes((52, 1, overload)) + tail):
        try:
            packet = parse(data)
        except MalformedPacket:
            continue
        for reader in (message_type, client_arch_codes):
            with contextlib.suppress(MalformedPacket):
                reader(packet)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "0 bytes"),
        (header()[:239], "239 bytes"),
        (header(cookie=b"\0\0\0\0"), "magic cookie is 00000000"),
        (header(op=3), "op is 3"),
        (header(hlen=17), "hlen is 17"),
        (header() + bytes((53,)), "option 53 at offset 240 of the options has no length byte"),
        (header() + bytes((53, 4, 1)), "option 53 at offset 240 of the options claims 4 bytes"),
        (header() + bytes((52, 1, 7, 255)), "option overload (52) is 07"),
        (header() + bytes((52, 0, 255)), "option overload (52) is empty"),
        (
            header(file=bytes(125) + bytes((67, 9, 1))) + bytes((52, 1, 1, 255)),
            "option 67 at offset 125 of the file field claims 9 bytes but only 1 remain",
        ),
    ],
    ids=[
        "empty",
        "short",
        "cookie",
        "op",
        "hlen",
        "no-length",
        "overrun",
        "overload-value",
        "overload-empty",
        "overrun-in-file",
    ],
)
def test_malformed_messages_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPacket, match=re.escape(message)):
        parse(data)


def test_pad_end_and_trailing_garbage() -> None:
    data = header() + bytes((0, 0, 53, 1, 1, 0, 255, 99, 99))
    assert parse(data).options == ((53, b"\x01"),)


def test_missing_end_is_tolerated() -> None:
    assert parse(header() + bytes((53, 1, 3))).options == ((53, b"\x03"),)


def test_repeated_options_are_joined_in_order_rfc3396() -> None:
    data = header() + bytes((12, 2)) + b"ab" + bytes((53, 1, 1, 12, 1)) + b"c" + b"\xff"
    assert parse(data).options == ((12, b"abc"), (53, b"\x01"))


def test_long_values_are_split_and_joined_back() -> None:
    value = bytes(range(256)) * 2  # 512 bytes: 255 + 255 + 2
    data = build(DhcpPacket(op=Op.BOOTREPLY, xid=1, chaddr=MAC, options=((43, value),)))
    assert data[240:242] == bytes((43, 255))
    assert data[240 + 257 : 242 + 257] == bytes((43, 255))
    assert data[240 + 514 : 242 + 514] == bytes((43, 2))
    assert parse(data).option(43) == value


def test_overload_unfolds_file_then_sname() -> None:
    file = bytes((67, 3)) + b"abc" + bytes((12, 1)) + b"x" + b"\xff"
    sname = bytes((12, 1)) + b"y" + b"\xff"
    data = header(file=file, sname=sname) + bytes((52, 1, 3, 12, 1)) + b"w" + b"\xff"
    packet = parse(data)
    assert packet.options == ((12, b"wxy"), (67, b"abc"))
    assert packet.file == b"" and packet.sname == b""


def test_overload_of_file_only_keeps_sname() -> None:
    data = header(file=bytes((53, 1, 5, 255)), sname=b"server") + bytes((52, 1, 1, 255))
    packet = parse(data)
    assert packet.options == ((53, b"\x05"),)
    assert packet.sname == b"server"


def test_fields_are_normalised() -> None:
    packet = DhcpPacket(op=Op.BOOTREQUEST, xid=7, chaddr=MAC, file=b"ipxe.efi\0\0")
    assert packet.chaddr == MAC + bytes(10)
    assert packet.file == b"ipxe.efi"
    assert packet.mac == "52:54:00:12:34:56"
    with pytest.raises(ValueError, match="chaddr is 17 bytes"):
        DhcpPacket(op=Op.BOOTREQUEST, xid=7, chaddr=bytes(17))
    with pytest.raises(ValueError, match="file is 129 bytes"):
        DhcpPacket(op=Op.BOOTREQUEST, xid=7, chaddr=MAC, file=b"x" * 129)


def test_build_rejects_values_that_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="out of range"):
        build(DhcpPacket(op=Op.BOOTREQUEST, xid=2**32, chaddr=MAC))
    with pytest.raises(ValueError, match="option code 255"):
        build(DhcpPacket(op=Op.BOOTREQUEST, xid=1, chaddr=MAC, options=((255, b""),)))


def test_option_readers() -> None:
    packet = DhcpPacket(
        op=Op.BOOTREQUEST,
        xid=1,
        chaddr=MAC,
        options=(
            (53, b"\x03"),
            (50, bytes((10, 0, 0, 9))),
            (93, b"\x00\x07\x00\x0b"),
            (54, b"\x01"),
        ),
    )
    assert message_type(packet) is MessageType.REQUEST
    assert ip_option(packet, 50) == IPv4Address("10.0.0.9")
    assert ip_option(packet, 51) is None
    assert client_arch_codes(packet) == (7, 11)
    with pytest.raises(MalformedPacket, match="option 54 is 1 bytes"):
        ip_option(packet, 54)
    bad = DhcpPacket(op=Op.BOOTREQUEST, xid=1, chaddr=MAC, options=((53, b"\x09"), (93, b"\x07")))
    with pytest.raises(MalformedPacket, match="option 53"):
        message_type(bad)
    with pytest.raises(MalformedPacket, match="option 93"):
        client_arch_codes(bad)
    assert not is_ipxe(packet)
    assert is_ipxe(DhcpPacket(op=Op.BOOTREQUEST, xid=1, chaddr=MAC, options=((77, b"iPXE"),)))
    assert is_ipxe(DhcpPacket(op=Op.BOOTREQUEST, xid=1, chaddr=MAC, options=((175, b""),)))


# -- scapy as an independent codec -------------------------------------------------------------


def scapy_options(layer: DHCP) -> dict[str, object]:
    return {opt[0]: opt[1:] for opt in layer.options if isinstance(opt, tuple)}


def test_scapy_parses_what_we_build() -> None:
    packet = DhcpPacket(
        op=Op.BOOTREPLY,
        xid=0xDEADBEEF,
        flags=0x8000,
        yiaddr=IPv4Address("10.0.0.50"),
        siaddr=IPv4Address("10.0.0.1"),
        chaddr=MAC,
        file=b"ipxe.efi",
        options=(
            (53, bytes((MessageType.OFFER,))),
            (54, bytes((10, 0, 0, 1))),
            (51, struct.pack("!I", 3600)),
            (1, bytes((255, 255, 255, 0))),
            (6, bytes((10, 0, 0, 2, 10, 0, 0, 3))),
            (66, b"10.0.0.1"),
            (67, b"ipxe.efi"),
        ),
    )
    data = build(packet)
    theirs = BOOTP(data)
    assert theirs.op == 2
    assert theirs.xid == 0xDEADBEEF
    assert theirs.flags == 0x8000
    assert theirs.yiaddr == "10.0.0.50"
    assert theirs.siaddr == "10.0.0.1"
    assert theirs.chaddr[:6] == MAC
    assert theirs.file.rstrip(b"\0") == b"ipxe.efi"
    opts = scapy_options(theirs[DHCP])
    assert opts["message-type"] == (2,)
    assert opts["server_id"] == ("10.0.0.1",)
    assert opts["lease_time"] == (3600,)
    assert opts["subnet_mask"] == ("255.255.255.0",)
    assert opts["name_server"] == ("10.0.0.2", "10.0.0.3")
    assert opts["tftp_server_name"] == (b"10.0.0.1",)
    assert opts["boot-file-name"] == (b"ipxe.efi",)


def test_we_parse_what_scapy_builds() -> None:
    theirs = BOOTP(
        op=1, xid=42, secs=4, flags=0x8000, giaddr="10.0.0.254", chaddr=MAC + bytes(10)
    ) / DHCP(
        options=[
            ("message-type", "request"),
            ("requested_addr", "10.0.0.77"),
            ("server_id", "10.0.0.1"),
            ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003016"),
            ("user_class", b"iPXE"),
            (93, b"\x00\x07"),
            ("param_req_list", [1, 3, 6, 66, 67]),
            "end",
        ]
    )
    ours = parse(bytes(theirs))
    assert ours.op is Op.BOOTREQUEST
    assert (ours.xid, ours.secs, ours.flags) == (42, 4, 0x8000)
    assert ours.giaddr == IPv4Address("10.0.0.254")
    assert ours.mac == "52:54:00:12:34:56"
    assert message_type(ours) is MessageType.REQUEST
    assert ip_option(ours, OptionCode.REQUESTED_IP) == IPv4Address("10.0.0.77")
    assert ip_option(ours, OptionCode.SERVER_ID) == IPv4Address("10.0.0.1")
    assert ours.option(OptionCode.VENDOR_CLASS_ID) == b"PXEClient:Arch:00007:UNDI:003016"
    assert client_arch_codes(ours) == (7,)
    assert is_ipxe(ours)
    assert ours.option(OptionCode.PARAMETER_REQUEST_LIST) == bytes((1, 3, 6, 66, 67))


@given(packets)
@settings(max_examples=100)
def test_scapy_agrees_on_header_fields(packet: DhcpPacket) -> None:
    theirs = BOOTP(build(packet))
    assert theirs.op == packet.op
    assert theirs.xid == packet.xid
    assert theirs.htype == packet.htype and theirs.hlen == packet.hlen
    assert theirs.ciaddr == str(packet.ciaddr) and theirs.yiaddr == str(packet.yiaddr)
    assert theirs.siaddr == str(packet.siaddr) and theirs.giaddr == str(packet.giaddr)
    assert theirs.chaddr == packet.chaddr
    assert theirs.sname.rstrip(b"\0") == packet.sname
    assert theirs.file.rstrip(b"\0") == packet.file

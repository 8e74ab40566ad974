"""The TFTP codec: exact bytes, round-trips, tolerated quirks and malformed input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxelab.errors import MalformedPacket
from pxelab.tftp.packet import (
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    Opcode,
    OptionAck,
    Packet,
    ReadRequest,
    WriteRequest,
    build,
    build_data,
    parse,
)

EXAMPLES: list[tuple[bytes, Packet]] = [
    (b"\0\1ipxe.efi\0octet\0", ReadRequest("ipxe.efi", "octet")),
    (
        b"\0\1/grub/grub.cfg\0octet\0blksize\x001468\0tsize\0000\0",
        ReadRequest("/grub/grub.cfg", "octet", {"blksize": "1468", "tsize": "0"}),
    ),
    (b"\0\2up.bin\0netascii\0", WriteRequest("up.bin", "netascii")),
    (b"\0\3\0\1hello", Data(1, b"hello")),
    (b"\0\3\xff\xff", Data(65535, b"")),
    (b"\0\4\0\0", Ack(0)),
    (b"\0\4\x12\x34", Ack(0x1234)),
    (b"\0\5\0\1file not found\0", ErrorPacket(ErrorCode.FILE_NOT_FOUND, "file not found")),
    (b"\0\5\0\x08\0", ErrorPacket(ErrorCode.OPTION_NEGOTIATION, "")),
    (b"\0\5\0\x63odd\0", ErrorPacket(99, "odd")),
    (b"\0\6tsize\x001048576\0", OptionAck({"tsize": "1048576"})),
]


@pytest.mark.parametrize(("wire", "packet"), EXAMPLES)
def test_examples_parse_and_build_exactly(wire: bytes, packet: Packet) -> None:
    assert parse(wire) == packet
    assert build(packet) == wire


def test_known_error_codes_parse_to_the_enum() -> None:
    error = parse(b"\0\5\0\2no\0")
    assert isinstance(error, ErrorPacket)
    assert error.code is ErrorCode.ACCESS_VIOLATION


@pytest.mark.parametrize(
    ("wire", "packet"),
    [
        # Option names and the mode are case-insensitive (RFC 1350, RFC 2347): lower-cased.
        (
            b"\0\1F\0OCTET\0BlkSize\0008\0",
            ReadRequest("F", "octet", {"blksize": "8"}),
        ),
        # NUL padding after the last option.
        (b"\0\1f\0octet\0tsize\0000\0\0\0\0", ReadRequest("f", "octet", {"tsize": "0"})),
        (b"\0\1f\0octet\0\0", ReadRequest("f", "octet")),
        # An empty option value is kept; the session decides what it means.
        (b"\0\1f\0octet\0tsize\0\0", ReadRequest("f", "octet", {"tsize": ""})),
        # Padded ACK and an ERROR without its final NUL.
        (b"\0\4\0\7\0\0\0\0", Ack(7)),
        (b"\0\5\0\x08aborted", ErrorPacket(ErrorCode.OPTION_NEGOTIATION, "aborted")),
        (b"\0\5\0\0bad \xff\0", ErrorPacket(0, "bad \ufffd")),
        (b"\0\1caf\xc3\xa9\0octet\0", ReadRequest("caf\u00e9", "octet")),
        (b"\0\6", OptionAck({})),
    ],
)
def test_tolerated_quirks(wire: bytes, packet: Packet) -> None:
    assert parse(wire) == packet


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", "no opcode"),
        (b"\0", "no opcode"),
        (b"\0\0", "unknown opcode 0"),
        (b"\0\7", "unknown opcode 7"),
        (b"\xff\xff\0\0", "unknown opcode 65535"),
        (b"\0\1", "needs a filename and a mode"),
        (b"\0\1file\0", "needs a filename and a mode"),
        (b"\0\1file\0octet", "does not end with a NUL"),
        (b"\0\1\0octet\0", "empty filename"),
        (b"\0\1file\0\0", "empty mode"),
        (b"\0\1\xff\xfe\0octet\0", "not valid UTF-8"),
        (b"\0\1file\0oct\xe9t\0", "mode is not ASCII"),
        (b"\0\1file\0octet\0blksize\0", "has no value"),
        (b"\0\1file\0octet\0\0x\0", "empty name"),
        (b"\0\1file\0octet\0tsize\0000\0TSIZE\0000\0", "given twice"),
        (b"\0\1file\0octet\0bl\xebk\0001\0", "option name is not ASCII"),
        (b"\0\1file\0octet\0blksize\0\xb9\0", "value is not ASCII"),
        (b"\0\2file", "does not end with a NUL"),
        (b"\0\3\0", "shorter than 4 bytes"),
        (b"\0\4", "shorter than 4 bytes"),
        (b"\0\5\0", "shorter than 4 bytes"),
        (b"\0\6tsize", "does not end with a NUL"),
        (b"\0\6tsize\0", "has no value"),
    ],
)
def test_malformed_says_why(wire: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        parse(wire)


@pytest.mark.parametrize(
    "packet",
    [
        ReadRequest("a\0b", "octet"),
        ReadRequest("", "octet"),
        ReadRequest("f", "octet", {"bl\0ksize": "8"}),
        ReadRequest("f", "\u00f6ctet"),
        Data(65536, b""),
        Ack(-1),
        ErrorPacket(70000, "x"),
        OptionAck({"tsize": "1\0"}),
    ],
)
def test_build_refuses_what_cannot_be_encoded(packet: Packet) -> None:
    with pytest.raises(ValueError):
        build(packet)


def test_build_data_wraps_the_block_number() -> None:
    assert build_data(65536, b"x") == b"\0\3\0\0x"
    assert build_data(65537, b"") == b"\0\3\0\1"
    assert parse(build_data(70000, b"abc")) == Data(70000 & 0xFFFF, b"abc")


def test_opcodes_and_error_codes_match_the_rfcs() -> None:
    assert [int(op) for op in Opcode] == [1, 2, 3, 4, 5, 6]
    assert [int(code) for code in ErrorCode] == list(range(9))


# --- properties ---------------------------------------------------------------------------

_ascii_text = st.text(st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=20)
_option_names = _ascii_text.map(str.lower)
_options = st.dictionaries(
    _option_names, st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=12)
)
_filenames = st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1)
_u16 = st.integers(0, 65535)

packets: st.SearchStrategy[Packet] = st.one_of(
    st.builds(ReadRequest, _filenames, _option_names, _options),
    st.builds(WriteRequest, _filenames, _option_names, _options),
    st.builds(Data, _u16, st.binary(max_size=600)),
    st.builds(Ack, _u16),
    st.builds(
        ErrorPacket,
        _u16.map(lambda c: ErrorCode(c) if c <= 8 else c),
        st.text(st.characters(codec="utf-8", exclude_characters="\0")),
    ),
    st.builds(OptionAck, _options),
)


@given(packets)
def test_parse_build_round_trip(packet: Packet) -> None:
    assert parse(build(packet)) == packet


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_malformed_packet(datagram: bytes) -> None:
    try:
        packet = parse(datagram)
    except MalformedPacket:
        return
    # Whatever parses builds again, and builds to something that parses the same.
    assert parse(build(packet)) == packet


@given(st.sampled_from([1, 2, 3, 4, 5, 6]), st.binary(max_size=200))
def test_random_bodies_raise_only_malformed_packet(opcode: int, body: bytes) -> None:
    with contextlib.suppress(MalformedPacket):
        parse(opcode.to_bytes(2, "big") + body)

"""TFTP packet codec (RFC 1350, 2347, 2348, 2349, 7440): bytes <-> frozen dataclasses.

`parse` raises only MalformedPacket, saying what was wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from pxelab.errors import MalformedPacket

__all__ = [
    "Ack",
    "Data",
    "ErrorCode",
    "ErrorPacket",
    "Opcode",
    "OptionAck",
    "Packet",
    "ReadRequest",
    "WriteRequest",
    "build",
    "build_data",
    "parse",
]

_HEADER = struct.Struct("!HH")
"""Opcode plus one 16-bit field (block number or error code)."""
_OPCODE = struct.Struct("!H")
"""A bare 16-bit field."""


class Opcode(IntEnum):
    """TFTP opcodes (RFC 1350 section 5, OACK from RFC 2347)."""

    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(IntEnum):
    """TFTP error codes (RFC 1350 appendix, code 8 from RFC 2347)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TRANSFER_ID = 5
    FILE_ALREADY_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_NEGOTIATION = 8


@dataclass(frozen=True)
class ReadRequest:
    """RRQ: the client wants to read `filename` from the server."""

    filename: str
    """Requested path as sent by the client (UTF-8 decoded, not yet checked)."""
    mode: str
    """Transfer mode, lower-cased: "octet", "netascii" or anything else the client wrote."""
    options: dict[str, str] = field(default_factory=dict)
    """RFC 2347 options in request order; names lower-cased, values as sent."""


@dataclass(frozen=True)
class WriteRequest:
    """WRQ: the client wants to write `filename` to the server."""

    filename: str
    """Requested path as sent by the client (UTF-8 decoded, not yet checked)."""
    mode: str
    """Transfer mode, lower-cased."""
    options: dict[str, str] = field(default_factory=dict)
    """RFC 2347 options in request order; names lower-cased, values as sent."""


@dataclass(frozen=True)
class Data:
    """DATA: one block of the file; a block shorter than blksize ends the transfer."""

    block: int
    """Block number, 0..65535 (the first block is 1; it wraps 65535 -> 0)."""
    data: bytes
    """The block's payload, 0..blksize bytes."""


@dataclass(frozen=True)
class Ack:
    """ACK: the receiver has every block up to and including `block` (0 acknowledges an OACK)."""

    block: int
    """Acknowledged block number, 0..65535."""


@dataclass(frozen=True)
class ErrorPacket:
    """ERROR: the sender gives up on the transfer."""

    code: int
    """An ErrorCode when known; other values are kept as plain ints."""
    message: str
    """Human-readable reason (ErrMsg); may be empty."""


@dataclass(frozen=True)
class OptionAck:
    """OACK: the server accepts these options (RFC 2347)."""

    options: dict[str, str] = field(default_factory=dict)
    """Accepted options and their final values; names lower-cased."""


Packet = ReadRequest | WriteRequest | Data | Ack | ErrorPacket | OptionAck
"""Any TFTP packet."""

_ERROR_CODES = frozenset(int(code) for code in ErrorCode)
"""Error codes parsed to ErrorCode members; others stay plain ints."""


def parse(datagram: bytes) -> Packet:
    """Decode one UDP payload; raise MalformedPacket saying what was wrong."""
    if len(datagram) < 2:
        raise MalformedPacket(f"datagram of {len(datagram)} bytes has no opcode")
    (raw_opcode,) = _OPCODE.unpack_from(datagram)
    try:
        opcode = Opcode(raw_opcode)
    except ValueError:
        raise MalformedPacket(f"unknown opcode {raw_opcode}") from None
    body = datagram[2:]
    if opcode is Opcode.RRQ or opcode is Opcode.WRQ:
        filename, mode, options = _parse_request(opcode, body)
        if opcode is Opcode.RRQ:
            return ReadRequest(filename, mode, options)
        return WriteRequest(filename, mode, options)
    if opcode is Opcode.OACK:
        return OptionAck(_parse_options(opcode, _split_strings(opcode, body)))
    if len(body) < 2:
        raise MalformedPacket(f"{opcode.name} of {len(datagram)} bytes is shorter than 4 bytes")
    (number,) = _OPCODE.unpack_from(body)
    if opcode is Opcode.DATA:
        return Data(number, bytes(body[2:]))
    if opcode is Opcode.ACK:
        # Anything after the block number is ignored: some embedded clients pad their ACKs.
        return Ack(number)
    # ERROR: the message should end with NUL; tolerate clients that leave it out.
    text, _, _ = bytes(body[2:]).partition(b"\0")
    code: int = ErrorCode(number) if number in _ERROR_CODES else number
    return ErrorPacket(code, text.decode("utf-8", errors="replace"))


def build(packet: Packet) -> bytes:
    """Encode one packet; raise ValueError for values that cannot be put on the wire."""
    if isinstance(packet, ReadRequest | WriteRequest):
        opcode = Opcode.RRQ if isinstance(packet, ReadRequest) else Opcode.WRQ
        strings = [
            _encode_string("filename", packet.filename, "utf-8"),
            _encode_string("mode", packet.mode, "ascii"),
        ]
        strings += _encode_options(packet.options)
        return _OPCODE.pack(opcode) + b"".join(s + b"\0" for s in strings)
    if isinstance(packet, OptionAck):
        strings = _encode_options(packet.options)
        return _OPCODE.pack(Opcode.OACK) + b"".join(s + b"\0" for s in strings)
    if isinstance(packet, Data):
        return _HEADER.pack(Opcode.DATA, _u16("block", packet.block)) + packet.data
    if isinstance(packet, Ack):
        return _HEADER.pack(Opcode.ACK, _u16("block", packet.block))
    message = _encode_string("message", packet.message, "utf-8", allow_empty=True)
    return _HEADER.pack(Opcode.ERROR, _u16("code", packet.code)) + message + b"\0"


def build_data(block: int, payload: bytes) -> bytes:
    """Encode a DATA packet for absolute block number `block` (wrapped to 16 bits)."""
    return _HEADER.pack(Opcode.DATA, block & 0xFFFF) + payload


def _split_strings(opcode: Opcode, body: bytes) -> list[bytes]:
    """Split a run of NUL-terminated strings; the last one must be terminated."""
    if not body:
        return []
    if not body.endswith(b"\0"):
        raise MalformedPacket(f"{opcode.name} does not end with a NUL byte")
    return body[:-1].split(b"\0")


def _parse_request(opcode: Opcode, body: bytes) -> tuple[str, str, dict[str, str]]:
    strings = _split_strings(opcode, body)
    if len(strings) < 2:
        raise MalformedPacket(f"{opcode.name} needs a filename and a mode")
    raw_filename, raw_mode = strings[0], strings[1]
    if not raw_filename:
        raise MalformedPacket(f"{opcode.name} has an empty filename")
    try:
        filename = raw_filename.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{opcode.name} filename is not valid UTF-8") from None
    mode = _decode_ascii(opcode, "mode", raw_mode).lower()
    if not mode:
        raise MalformedPacket(f"{opcode.name} has an empty mode")
    return filename, mode, _parse_options(opcode, strings[2:])


def _parse_options(opcode: Opcode, strings: list[bytes]) -> dict[str, str]:
    """Decode name/value pairs; trailing NUL padding (empty strings only) is ignored."""
    options: dict[str, str] = {}
    for i in range(0, len(strings), 2):
        raw_name = strings[i]
        if not raw_name:
            if any(strings[i:]):
                raise MalformedPacket(f"{opcode.name} has an option with an empty name")
            break
        name = _decode_ascii(opcode, "option name", raw_name).lower()
        if i + 1 >= len(strings):
            raise MalformedPacket(f"{opcode.name} option {name!r} has no value")
        if name in options:
            raise MalformedPacket(f"{opcode.name} option {name!r} is given twice")
        options[name] = _decode_ascii(opcode, f"option {name!r} value", strings[i + 1])
    return options


def _decode_ascii(opcode: Opcode, what: str, raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{opcode.name} {what} is not ASCII") from None


def _encode_string(what: str, text: str, encoding: str, *, allow_empty: bool = False) -> bytes:
    raw = text.encode(encoding)
    if b"\0" in raw:
        raise ValueError(f"{what} {text!r} contains a NUL byte")
    if not raw and not allow_empty:
        raise ValueError(f"{what} is empty")
    return raw


def _encode_options(options: dict[str, str]) -> list[bytes]:
    out: list[bytes] = []
    for name, value in options.items():
        out.append(_encode_string("option name", name, "ascii"))
        out.append(_encode_string(f"option {name!r} value", value, "ascii", allow_empty=True))
    return out


def _u16(what: str, value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit in 16 bits")
    return value

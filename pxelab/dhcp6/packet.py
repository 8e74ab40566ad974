"""DHCPv6 wire format (RFC 8415 §8, §9, §21.1): `parse` bytes into a message, `build` it back.

Pure struct code: no sockets, no clock. Parse failures raise only MalformedPacket, saying why.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address

from pxelab.errors import MalformedPacket

SERVER_PORT, CLIENT_PORT = 547, 546
ALL_DHCP_RELAY_AGENTS_AND_SERVERS = "ff02::1:2"
"""The link-scoped multicast group clients send to (RFC 8415 §7.1)."""
HOP_COUNT_LIMIT = 32
"""RFC 8415 §7.6: relays (and so nesting) stop at 32 hops."""

_OPTION = struct.Struct("!HH")
_RELAY = struct.Struct("!BB16s16s")


class MessageType(IntEnum):
    """DHCPv6 message types (RFC 8415 §7.3)."""

    SOLICIT = 1
    ADVERTISE = 2
    REQUEST = 3
    CONFIRM = 4
    RENEW = 5
    REBIND = 6
    REPLY = 7
    RELEASE = 8
    DECLINE = 9
    RECONFIGURE = 10
    INFORMATION_REQUEST = 11
    RELAY_FORW = 12
    RELAY_REPL = 13


class OptionCode(IntEnum):
    """The option codes pxelab reads or writes (RFC 8415 §21, RFC 3646, RFC 5970, RFC 6939)."""

    CLIENTID = 1
    SERVERID = 2
    IA_NA = 3
    IA_TA = 4
    IAADDR = 5
    ORO = 6
    PREFERENCE = 7
    ELAPSED_TIME = 8
    RELAY_MSG = 9
    STATUS_CODE = 13
    RAPID_COMMIT = 14
    USER_CLASS = 15
    VENDOR_CLASS = 16
    VENDOR_OPTS = 17
    INTERFACE_ID = 18
    DNS_SERVERS = 23
    DOMAIN_LIST = 24
    BOOTFILE_URL = 59
    BOOTFILE_PARAM = 60
    CLIENT_ARCH_TYPE = 61
    NII = 62
    CLIENT_LINKLAYER_ADDR = 79


Options = tuple[tuple[int, bytes], ...]
"""Options in wire order as (code, value); a code may repeat (several IA_NA, say)."""

RELAY_TYPES = (MessageType.RELAY_FORW, MessageType.RELAY_REPL)


@dataclass(frozen=True)
class Dhcp6Message:
    """One client/server message: type, 24-bit transaction id, options."""

    msg_type: MessageType
    """What the message is (SOLICIT, REPLY, ...); never a relay type."""
    transaction_id: int
    """Chosen by the client, echoed in replies (24 bits)."""
    options: Options = ()
    """Its options in wire order."""

    def __post_init__(self) -> None:
        if self.msg_type in RELAY_TYPES:
            raise ValueError(f"{self.msg_type.name} is a relay message, not a client/server one")
        if not 0 <= self.transaction_id < 1 << 24:
            raise ValueError(f"transaction id {self.transaction_id} does not fit 24 bits")

    def option(self, code: int) -> bytes | None:
        """The value of the first option `code`, or None when absent."""
        return first(self.options, code)


@dataclass(frozen=True)
class RelayMessage:
    """RELAY-FORW or RELAY-REPL (RFC 8415 §9): one relay's envelope around a message."""

    msg_type: MessageType
    """RELAY_FORW from a relay, RELAY_REPL back to it."""
    hop_count: int
    """Relays passed before this one (0 for the relay next to the client)."""
    link_address: IPv6Address
    """An address on the client's link (picks the pool), or :: when the relay cannot say."""
    peer_address: IPv6Address
    """Where the relay got the message from: the client, or the previous relay."""
    options: Options = ()
    """Its options; RELAY_MSG (9) holds the message relayed."""

    def __post_init__(self) -> None:
        if self.msg_type not in RELAY_TYPES:
            raise ValueError(f"{self.msg_type.name} is not a relay message")
        if not 0 <= self.hop_count < 256:
            raise ValueError(f"hop count {self.hop_count} does not fit a byte")

    def option(self, code: int) -> bytes | None:
        """The value of the first option `code`, or None when absent."""
        return first(self.options, code)


Message = Dhcp6Message | RelayMessage


def first(options: Options, code: int) -> bytes | None:
    """The value of the first option `code` in `options`, or None."""
    for have, value in options:
        if have == code:
            return value
    return None


def parse(data: bytes) -> Message:
    """Decode one UDP payload; raise MalformedPacket saying what is wrong with it."""
    data = bytes(data)
    if not data:
        raise MalformedPacket("datagram is empty; a DHCPv6 message needs at least 4 bytes")
    try:
        kind = MessageType(data[0])
    except ValueError:
        raise MalformedPacket(f"message type {data[0]} is not a DHCPv6 type 1..13") from None
    if kind in RELAY_TYPES:
        if len(data) < _RELAY.size:
            raise MalformedPacket(
                f"{kind.name} is {len(data)} bytes; a relay message needs {_RELAY.size}"
            )
        _, hops, link, peer = _RELAY.unpack_from(data)
        return RelayMessage(
            kind,
            hops,
            IPv6Address(link),
            IPv6Address(peer),
            parse_options(data[_RELAY.size :], kind.name),
        )
    if len(data) < 4:
        raise MalformedPacket(f"{kind.name} is {len(data)} bytes; a message needs at least 4")
    xid = int.from_bytes(data[1:4], "big")
    return Dhcp6Message(kind, xid, parse_options(data[4:], kind.name))


def parse_options(data: bytes, where: str) -> Options:
    """The options in `data` (a message body or an option's sub-options) as (code, value)."""
    out: list[tuple[int, bytes]] = []
    i, end = 0, len(data)
    while i < end:
        if end - i < _OPTION.size:
            raise MalformedPacket(
                f"{where}: {end - i} stray bytes at offset {i}, an option header needs 4"
            )
        code, length = _OPTION.unpack_from(data, i)
        stop = i + _OPTION.size + length
        if stop > end:
            raise MalformedPacket(
                f"{where}: option {code} at offset {i} claims {length} bytes "
                f"but only {end - i - _OPTION.size} remain"
            )
        out.append((code, data[i + _OPTION.size : stop]))
        i = stop
    return tuple(out)


def build_options(options: Options) -> bytes:
    """Encode options; a value over 65535 bytes is a ValueError."""
    out = []
    for code, value in options:
        if not 0 <= code < 1 << 16 or len(value) >= 1 << 16:
            raise ValueError(f"option {code} with {len(value)} bytes cannot be encoded")
        out.append(_OPTION.pack(code, len(value)))
        out.append(value)
    return b"".join(out)


def build(message: Message) -> bytes:
    """Encode a message."""
    if isinstance(message, RelayMessage):
        head = _RELAY.pack(
            message.msg_type,
            message.hop_count,
            message.link_address.packed,
            message.peer_address.packed,
        )
        return head + build_options(message.options)
    head = bytes((message.msg_type,)) + message.transaction_id.to_bytes(3, "big")
    return head + build_options(message.options)

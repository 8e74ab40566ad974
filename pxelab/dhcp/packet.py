"""BOOTP/DHCP wire format (RFC 2131, 2132, 3396): `parse` bytes into a DhcpPacket, `build` it back.

Pure struct code: no sockets, no clock. Parse failures raise only MalformedPacket, saying why.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from ipaddress import IPv4Address

from pxelab.errors import MalformedPacket

MAGIC_COOKIE = b"\x63\x82\x53\x63"
"""The four bytes that start the options area of every DHCP message (RFC 2131 §3)."""

HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
"""The fixed BOOTP header plus the magic cookie: 240 bytes."""

MIN_MESSAGE_SIZE = 300
"""Built messages are padded to this size: RFC 1542 relays and old PXE ROMs drop shorter ones."""

ZERO_IP = IPv4Address(0)
_ZERO_PACKED = bytes(4)

BROADCAST_FLAG = 0x8000
"""The one defined bit of `flags`: the client cannot receive unicast before it has an address."""

CHADDR_SIZE, SNAME_SIZE, FILE_SIZE = 16, 64, 128


class Op(IntEnum):
    """BOOTP `op`: who sent the message."""

    BOOTREQUEST = 1
    BOOTREPLY = 2


class MessageType(IntEnum):
    """DHCP message type, the value of option 53 (RFC 2132 §9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class OptionCode(IntEnum):
    """The option codes pxelab reads or writes (RFC 2132, RFC 4578, iPXE)."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS_SERVERS = 6
    LOG_SERVERS = 7
    HOST_NAME = 12
    DOMAIN_NAME = 15
    VENDOR_SPECIFIC = 43
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    VENDOR_CLASS_ID = 60
    CLIENT_ID = 61
    TFTP_SERVER_NAME = 66
    BOOTFILE_NAME = 67
    USER_CLASS = 77
    CLIENT_ARCH = 93
    CLIENT_NDI = 94
    CLIENT_UUID = 97
    IPXE_ENCAP = 175
    END = 255


Options = tuple[tuple[int, bytes], ...]
"""Options in wire order as (code, value); each code at most once after parsing."""


@dataclass(frozen=True, kw_only=True)
class DhcpPacket:
    """One BOOTP/DHCP message. `options` are the logical ones: repeats joined, overload unfolded."""

    op: Op
    """BOOTREQUEST from clients, BOOTREPLY from servers."""
    htype: int = 1
    """Hardware address type; 1 is Ethernet."""
    hlen: int = 6
    """Length of the hardware address at the start of `chaddr`."""
    hops: int = 0
    """Relay agents passed; clients send 0."""
    xid: int
    """Transaction id chosen by the client, echoed in replies."""
    secs: int = 0
    """Seconds since the client began acquiring an address."""
    flags: int = 0
    """Bit 0x8000 is the broadcast flag; the others must be zero."""
    ciaddr: IPv4Address = ZERO_IP
    """Client address, only when the client already has one (renew, rebind, inform)."""
    yiaddr: IPv4Address = ZERO_IP
    """'Your' address: what the server offers or acknowledges."""
    siaddr: IPv4Address = ZERO_IP
    """Next server in the boot process (the TFTP server)."""
    giaddr: IPv4Address = ZERO_IP
    """Relay agent address, zero when not relayed."""
    chaddr: bytes
    """Client hardware address field, normalised to its full 16 bytes."""
    sname: bytes = b""
    """Server host name field, without trailing NULs."""
    file: bytes = b""
    """Boot file name field, without trailing NULs."""
    options: Options = ()
    """DHCP options after the magic cookie, in order, without pad, end and overload (52)."""

    def __post_init__(self) -> None:
        if len(self.chaddr) > CHADDR_SIZE:
            raise ValueError(f"chaddr is {len(self.chaddr)} bytes, the field holds {CHADDR_SIZE}")
        if len(self.sname) > SNAME_SIZE:
            raise ValueError(f"sname is {len(self.sname)} bytes, the field holds {SNAME_SIZE}")
        if len(self.file) > FILE_SIZE:
            raise ValueError(f"file is {len(self.file)} bytes, the field holds {FILE_SIZE}")
        if len(self.chaddr) != CHADDR_SIZE:
            object.__setattr__(self, "chaddr", self.chaddr.ljust(CHADDR_SIZE, b"\0"))
        if self.sname.endswith(b"\0"):
            object.__setattr__(self, "sname", self.sname.rstrip(b"\0"))
        if self.file.endswith(b"\0"):
            object.__setattr__(self, "file", self.file.rstrip(b"\0"))

    @cached_property
    def mac(self) -> str:
        """The hardware address as lowercase colon-separated hex, e.g. "aa:bb:cc:dd:ee:ff"."""
        return ":".join(f"{b:02x}" for b in self.chaddr[: min(self.hlen, CHADDR_SIZE)])

    @property
    def broadcast(self) -> bool:
        """Whether the client set the broadcast flag."""
        return bool(self.flags & BROADCAST_FLAG)

    def option(self, code: int) -> bytes | None:
        """The value of option `code`, or None when the message does not carry it."""
        for have, value in self.options:
            if have == code:
                return value
        return None


def parse(data: bytes) -> DhcpPacket:
    """Decode one UDP payload; raise MalformedPacket saying what is wrong with it."""
    data = bytes(data)
    if len(data) < HEADER.size:
        raise MalformedPacket(
            f"datagram is {len(data)} bytes; a DHCP message needs at least {HEADER.size} "
            "(BOOTP header and magic cookie)"
        )
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file, cookie) = HEADER.unpack_from(data)  # fmt: skip
    if cookie != MAGIC_COOKIE:
        raise MalformedPacket(
            f"magic cookie is {cookie.hex()}, not 63825363 (plain BOOTP is not supported)"
        )
    if op not in (Op.BOOTREQUEST, Op.BOOTREPLY):
        raise MalformedPacket(f"op is {op}, neither BOOTREQUEST (1) nor BOOTREPLY (2)")
    if hlen > CHADDR_SIZE:
        raise MalformedPacket(f"hlen is {hlen}, longer than the {CHADDR_SIZE}-byte chaddr field")

    parts: dict[int, list[bytes]] = {}
    _scan(data, HEADER.size, "options", parts)
    overload = parts.pop(OptionCode.OVERLOAD, None)
    if overload is not None:
        value = b"".join(overload)
        if len(value) != 1 or value[0] not in (1, 2, 3):
            raise MalformedPacket(
                f"option overload (52) is {value.hex() or 'empty'}, not 1, 2 or 3"
            )
        # RFC 3396 §7: the options field first, then `file`, then `sname`.
        if value[0] & 1:
            _scan(file, 0, "file field", parts)
            file = b""
        if value[0] & 2:
            _scan(sname, 0, "sname field", parts)
            sname = b""
        parts.pop(OptionCode.OVERLOAD, None)
    return DhcpPacket(
        op=Op(op),
        htype=htype,
        hlen=hlen,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=_address(ciaddr),
        yiaddr=_address(yiaddr),
        siaddr=_address(siaddr),
        giaddr=_address(giaddr),
        chaddr=chaddr,
        sname=sname.rstrip(b"\0"),
        file=file.rstrip(b"\0"),
        options=tuple((code, b"".join(values)) for code, values in parts.items()),
    )


def _address(packed: bytes) -> IPv4Address:
    """An address field; the common all-zero one without building a new object."""
    return ZERO_IP if packed == _ZERO_PACKED else IPv4Address(packed)


def _scan(buf: bytes, start: int, where: str, parts: dict[int, list[bytes]]) -> None:
    """Collect the options of one area into `parts`; repeats are kept for RFC 3396 joining."""
    i, end = start, len(buf)
    while i < end:
        code = buf[i]
        if code == OptionCode.PAD:
            i += 1
            continue
        if code == OptionCode.END:
            return
        if i + 1 >= end:
            raise MalformedPacket(f"option {code} at offset {i} of the {where} has no length byte")
        length = buf[i + 1]
        stop = i + 2 + length
        if stop > end:
            raise MalformedPacket(
                f"option {code} at offset {i} of the {where} claims {length} bytes "
                f"but only {end - i - 2} remain"
            )
        parts.setdefault(code, []).append(buf[i + 2 : stop])
        i = stop
    # A missing END option is tolerated: some firmware omits it and the length is known anyway.


def build(packet: DhcpPacket, *, min_size: int = MIN_MESSAGE_SIZE) -> bytes:
    """Encode a message; values over 255 bytes are split into repeats (RFC 3396)."""
    try:
        header = HEADER.pack(
            packet.op,
            packet.htype,
            packet.hlen,
            packet.hops,
            packet.xid,
            packet.secs,
            packet.flags,
            packet.ciaddr.packed,
            packet.yiaddr.packed,
            packet.siaddr.packed,
            packet.giaddr.packed,
            packet.chaddr,
            packet.sname,
            packet.file,
            MAGIC_COOKIE,
        )
    except struct.error as exc:
        raise ValueError(f"a header field is out of range: {exc}") from exc
    out = [header]
    for code, value in packet.options:
        if not 0 < code < OptionCode.END or code == OptionCode.OVERLOAD:
            raise ValueError(f"option code {code} cannot be carried as an option value")
        if not value:
            out.append(bytes((code, 0)))
        for offset in range(0, len(value), 255):
            chunk = value[offset : offset + 255]
            out.append(bytes((code, len(chunk))))
            out.append(chunk)
    out.append(bytes((OptionCode.END,)))
    data = b"".join(out)
    if len(data) < min_size:
        data += bytes(min_size - len(data))
    return data

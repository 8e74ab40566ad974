"""Typed readers and writers for the DHCP option values pxelab uses (RFC 2132, 3004, 4578).

Readers raise MalformedPacket when a value has the wrong shape; writers return raw bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from ipaddress import IPv4Address

from pxelab.dhcp.packet import DhcpPacket, MessageType, OptionCode
from pxelab.errors import MalformedPacket


def message_type(packet: DhcpPacket) -> MessageType | None:
    """Option 53, or None for a plain BOOTP message without it."""
    value = packet.option(OptionCode.MESSAGE_TYPE)
    if value is None:
        return None
    if len(value) != 1:
        raise MalformedPacket(f"message type (option 53) is {len(value)} bytes, not 1")
    try:
        return MessageType(value[0])
    except ValueError:
        raise MalformedPacket(f"message type (option 53) {value[0]} is not 1..8") from None


def ip_option(packet: DhcpPacket, code: int) -> IPv4Address | None:
    """A single-address option (50 requested address, 54 server id), or None when absent."""
    value = packet.option(code)
    if value is None:
        return None
    if len(value) != 4:
        raise MalformedPacket(f"option {code} is {len(value)} bytes, an IPv4 address needs 4")
    return IPv4Address(value)


def client_arch_codes(packet: DhcpPacket) -> tuple[int, ...] | None:
    """Option 93, the list of 16-bit client architecture types (RFC 4578 §2.1), or None."""
    value = packet.option(OptionCode.CLIENT_ARCH)
    if value is None:
        return None
    if not value or len(value) % 2:
        raise MalformedPacket(
            f"client architecture (option 93) is {len(value)} bytes, not a non-empty even count"
        )
    return struct.unpack(f"!{len(value) // 2}H", value)


def is_ipxe(packet: DhcpPacket) -> bool:
    """Whether the client is iPXE: user class (77) says "iPXE" or iPXE's option 175 is present."""
    if packet.option(OptionCode.IPXE_ENCAP) is not None:
        return True
    user_class = packet.option(OptionCode.USER_CLASS)
    return user_class is not None and b"iPXE" in user_class


def vendor_class(packet: DhcpPacket) -> bytes:
    """Option 60 (e.g. b"PXEClient:Arch:00007:..."), or b"" when absent."""
    return packet.option(OptionCode.VENDOR_CLASS_ID) or b""


def encode_ip(address: IPv4Address) -> bytes:
    """One address as an option value."""
    return address.packed


def encode_ips(addresses: Iterable[IPv4Address]) -> bytes:
    """A list of addresses (routers, DNS servers) as an option value."""
    return b"".join(a.packed for a in addresses)


def encode_u32(value: int) -> bytes:
    """A 32-bit unsigned value (lease time, T1, T2)."""
    return struct.pack("!I", value)


def encode_text(text: str) -> bytes:
    """A string option (66, 67, 56) as ASCII/UTF-8 bytes, not NUL-terminated (RFC 2132 §2)."""
    return text.encode()

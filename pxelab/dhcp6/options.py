"""Typed readers and writers for the DHCPv6 option values pxelab uses (RFC 8415 §21, RFC 5970).

Readers raise MalformedPacket when a value has the wrong shape; writers return raw bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address

from pxelab.dhcp6.packet import OptionCode, Options, build_options, parse_options
from pxelab.errors import MalformedPacket

ENTERPRISE_PXE = 343
"""Intel's enterprise number, which UEFI PXE and HTTP boot put in the vendor class (option 16)."""
HTYPE_ETHERNET = 1

_IA = struct.Struct("!III")
_IAADDR = struct.Struct("!16sII")


class StatusCode(IntEnum):
    """Status codes (RFC 8415 §21.13)."""

    SUCCESS = 0
    UNSPEC_FAIL = 1
    NO_ADDRS_AVAIL = 2
    NO_BINDING = 3
    NOT_ON_LINK = 4
    USE_MULTICAST = 5


class DuidType(IntEnum):
    """DUID types (RFC 8415 §11, RFC 6355)."""

    LLT = 1
    EN = 2
    LL = 3
    UUID = 4


@dataclass(frozen=True)
class IaAddress:
    """An IA Address option (5): one address and its lifetimes."""

    address: IPv6Address
    """The address."""
    preferred: int
    """Preferred lifetime, seconds."""
    valid: int
    """Valid lifetime, seconds (0: the client must stop using it)."""
    options: Options = ()
    """Its sub-options (a status code)."""


@dataclass(frozen=True)
class IaNa:
    """An Identity Association for Non-temporary Addresses (option 3)."""

    iaid: int
    """The client's id for this IA, unique among its IAs."""
    t1: int
    """Seconds until the client renews with this server."""
    t2: int
    """Seconds until the client rebinds with any server."""
    options: Options = ()
    """Its sub-options: IAADDR (5) and STATUS_CODE (13)."""

    def addresses(self) -> list[IaAddress]:
        """The IA Address options it carries."""
        return [parse_iaaddr(value) for code, value in self.options if code == OptionCode.IAADDR]


def parse_ia_na(value: bytes) -> IaNa:
    """Option 3's value."""
    if len(value) < _IA.size:
        raise MalformedPacket(f"IA_NA (option 3) is {len(value)} bytes, needs at least 12")
    iaid, t1, t2 = _IA.unpack_from(value)
    return IaNa(iaid, t1, t2, parse_options(value[_IA.size :], f"IA_NA {iaid}"))


def build_ia_na(ia: IaNa) -> bytes:
    """Option 3's value."""
    return _IA.pack(ia.iaid, ia.t1, ia.t2) + build_options(ia.options)


def parse_iaaddr(value: bytes) -> IaAddress:
    """Option 5's value."""
    if len(value) < _IAADDR.size:
        raise MalformedPacket(f"IAADDR (option 5) is {len(value)} bytes, needs at least 24")
    packed, preferred, valid = _IAADDR.unpack_from(value)
    address = IPv6Address(packed)
    return IaAddress(address, preferred, valid, parse_options(value[_IAADDR.size :], "IAADDR"))


def build_iaaddr(addr: IaAddress) -> bytes:
    """Option 5's value."""
    head = _IAADDR.pack(addr.address.packed, addr.preferred, addr.valid)
    return head + build_options(addr.options)


def status(code: StatusCode, message: str = "") -> tuple[int, bytes]:
    """A Status Code option (13)."""
    return OptionCode.STATUS_CODE, struct.pack("!H", code) + message.encode()


def parse_status(value: bytes) -> tuple[int, str]:
    """Option 13's value: the code and its message."""
    if len(value) < 2:
        raise MalformedPacket(f"status code (option 13) is {len(value)} bytes, needs at least 2")
    return int.from_bytes(value[:2], "big"), value[2:].decode("utf-8", "replace")


def u16_list(value: bytes, what: str) -> tuple[int, ...]:
    """A list of 16-bit values (ORO 6, client architecture 61)."""
    if len(value) % 2:
        raise MalformedPacket(f"{what} is {len(value)} bytes, not a list of 16-bit values")
    return struct.unpack(f"!{len(value) // 2}H", value)


def arch_codes(value: bytes) -> tuple[int, ...]:
    """Option 61, the client's architecture types (RFC 5970 §3.3), preferred first."""
    codes = u16_list(value, "client architecture (option 61)")
    if not codes:
        raise MalformedPacket("client architecture (option 61) is empty")
    return codes


def opaque_list(value: bytes, what: str) -> tuple[bytes, ...]:
    """A list of 16-bit-length-prefixed items (user class data, vendor class data)."""
    items = []
    i = 0
    while i < len(value):
        if len(value) - i < 2:
            raise MalformedPacket(f"{what}: a stray byte at offset {i}")
        size = int.from_bytes(value[i : i + 2], "big")
        if i + 2 + size > len(value):
            raise MalformedPacket(
                f"{what}: item at offset {i} claims {size} bytes, {len(value) - i - 2} remain"
            )
        items.append(value[i + 2 : i + 2 + size])
        i += 2 + size
    return tuple(items)


def encode_opaque_list(items: Iterable[bytes]) -> bytes:
    """Items as a 16-bit-length-prefixed list."""
    return b"".join(struct.pack("!H", len(item)) + item for item in items)


def user_classes(value: bytes) -> tuple[bytes, ...]:
    """Option 15's user class data items."""
    return opaque_list(value, "user class (option 15)")


def vendor_class(value: bytes) -> tuple[int, tuple[bytes, ...]]:
    """Option 16: the enterprise number and the vendor class data items."""
    if len(value) < 4:
        raise MalformedPacket(f"vendor class (option 16) is {len(value)} bytes, needs at least 4")
    return int.from_bytes(value[:4], "big"), opaque_list(value[4:], "vendor class (option 16)")


def encode_vendor_class(enterprise: int, items: Iterable[bytes]) -> bytes:
    """Option 16's value."""
    return struct.pack("!I", enterprise) + encode_opaque_list(items)


def addresses(value: bytes, what: str) -> tuple[IPv6Address, ...]:
    """A list of IPv6 addresses (DNS servers, option 23)."""
    if len(value) % 16:
        raise MalformedPacket(f"{what} is {len(value)} bytes, not a list of 16-byte addresses")
    return tuple(IPv6Address(value[i : i + 16]) for i in range(0, len(value), 16))


def mac_text(raw: bytes) -> str:
    """A 6-byte hardware address as lowercase "aa:bb:cc:dd:ee:ff"."""
    return ":".join(f"{b:02x}" for b in raw)


def duid_mac(duid: bytes) -> str | None:
    """The Ethernet address in a DUID-LLT or DUID-LL, or None for other DUIDs."""
    if len(duid) < 4:
        return None
    kind, htype = struct.unpack_from("!HH", duid)
    lladdr = {DuidType.LLT: duid[8:], DuidType.LL: duid[4:]}.get(kind) if htype else None
    if htype != HTYPE_ETHERNET or lladdr is None or len(lladdr) != 6:
        return None
    return mac_text(lladdr)


def duid_ll(mac: bytes) -> bytes:
    """A DUID-LL for an Ethernet address: this server's stable identifier."""
    return struct.pack("!HH", DuidType.LL, HTYPE_ETHERNET) + mac


def linklayer_mac(value: bytes) -> str | None:
    """The Ethernet address in a relay's client link-layer address option (79, RFC 6939)."""
    if len(value) != 8 or int.from_bytes(value[:2], "big") != HTYPE_ETHERNET:
        return None
    return mac_text(value[2:])


def eui64_mac(address: IPv6Address) -> str | None:
    """The Ethernet address a modified EUI-64 interface id (fe80::5054:ff:fe12:3456) came from."""
    iid = address.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    return mac_text(bytes((iid[0] ^ 0x02,)) + iid[1:3] + iid[5:8])

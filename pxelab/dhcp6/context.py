"""The vocabulary of the DHCPv6 core: this server on one link (Dhcp6Context), the inventory as it
sees it (Host6Lookup), who sent a message (Sender6), and the outcomes (Dhcp6Reply, NoReply6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Protocol

from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp.context import BootHostInfo, UnknownMacs
from pxelab.dhcp6.leases import Lease6
from pxelab.dhcp6.packet import SERVER_PORT, Message
from pxelab.errors import ConfigError

POOL_FIRST, POOL_LAST = 0x1000, 0xFFFF
"""Default pool: these interface ids in the prefix (::1000 to ::ffff), clear of static ::1."""


class Host6Info(BootHostInfo, Protocol):
    """What the DHCPv6 policy reads from an inventory host."""

    @property
    def ip6(self) -> IPv6Address | None:
        """Its reserved IPv6 address, or None to give it one from the pool."""
        ...


class Host6Lookup(Protocol):
    """The inventory as the DHCPv6 core sees it; answers from memory."""

    def lookup(self, mac: str) -> Host6Info | None:
        """The host with this MAC (lowercase "aa:bb:..."), or None when unknown."""
        ...

    def reserved6(self) -> Mapping[IPv6Address, str]:
        """Every reserved IPv6 address and the MAC it is reserved for."""
        ...


@dataclass(frozen=True)
class Dhcp6Context:
    """What the DHCPv6 policy needs to know about this server and one link (prefix) it serves."""

    server_duid: bytes
    """This server's DUID (option 2)."""
    server_ip: IPv6Address
    """This server's address, put in the boot file URLs (TFTP and HTTP)."""
    prefix: IPv6Network
    """The link's prefix; addresses are handed out from it."""
    pool_start: IPv6Address
    """First address handed to hosts without a reservation."""
    pool_end: IPv6Address
    """Last address of the pool, inclusive."""
    dns: tuple[IPv6Address, ...] = ()
    """DNS servers (option 23); empty sends none."""
    lease_time: int = 3600
    """Valid and preferred lifetime of an address, seconds; T1 and T2 are 0.5 and 0.8 of it."""
    http_port: int = 80
    """Port of pxelab's HTTP server, in the URLs for iPXE and UEFI HTTP clients."""
    boot_files: BootFiles = field(default_factory=BootFiles)
    """Boot file per firmware family."""
    offer_hold: float = 60.0
    """Seconds an advertised address stays held for the client to REQUEST it."""
    unknown_macs: UnknownMacs = UnknownMacs.SERVE
    """Whether clients missing from the inventory are answered at all."""
    preference: int = 255
    """Option 7 in ADVERTISE: 255 tells clients to take this server's at once."""
    relayed: bool = False
    """The link is reached through relays, so `server_ip` is not in `prefix`."""

    def __post_init__(self) -> None:
        keys = (
            ("pool_start", "pool_end") if self.relayed else ("server_ip", "pool_start", "pool_end")
        )
        for key in keys:
            if getattr(self, key) not in self.prefix:
                raise ConfigError(f"dhcp6 {key} {getattr(self, key)} is not in {self.prefix}")
        if self.pool_end < self.pool_start:
            raise ConfigError(f"dhcp6 pool_end {self.pool_end} is before {self.pool_start}")
        if not 0 < self.lease_time < 2**32 - 1:
            raise ConfigError(f"dhcp6 lease_time {self.lease_time} is not a positive 32-bit count")
        if not 0 <= self.preference <= 255:
            raise ConfigError(f"dhcp6 preference {self.preference} is not 0..255")

    def url(self, path: str) -> str:
        """An http:// URL on pxelab's HTTP server, the address in brackets."""
        return f"http://[{self.server_ip}]:{self.http_port}/{path.lstrip('/')}"

    def tftp_url(self, name: str) -> str:
        """A tftp:// URL for a file on the TFTP root (RFC 5970 §3.1)."""
        return f"tftp://[{self.server_ip}]/{name.lstrip('/')}"


def default_pool(prefix: IPv6Network) -> tuple[IPv6Address, IPv6Address]:
    """The default pool of a prefix: interface ids ::1000 to ::ffff (the whole of a tiny one)."""
    base = int(prefix.network_address)
    if prefix.num_addresses > POOL_LAST + 1:
        return IPv6Address(base + POOL_FIRST), IPv6Address(base + POOL_LAST)
    return IPv6Address(base + prefix.num_addresses // 2), prefix[-1]


@dataclass(frozen=True)
class Sender6:
    """Where a message came from and where it arrived."""

    address: str
    """Its source address (link-local from a client on the link, global from a relay)."""
    port: int
    """Its source UDP port (546 from a client, 547 from a relay)."""
    interface: str
    """The interface it arrived on: picks the pool of a message no relay forwarded."""


@dataclass(frozen=True)
class Dhcp6Reply:
    """A message to send and where."""

    message: Message
    """The ADVERTISE or REPLY, wrapped in RELAY-REPL when the request was relayed."""
    destination: tuple[str, int]
    """UDP (address, port): the client's (546) or the relay's (547)."""
    client: str
    """Who it is for: the MAC, else "duid:<hex>", for the log."""
    note: str = ""
    """What decided the boot file URL (or why there is none), for the log."""
    changes: tuple[Lease6, ...] = ()
    """Lease records changed in deciding it: the store must hold them before the reply is sent."""
    server_port: int = SERVER_PORT
    """The port to send from."""


@dataclass(frozen=True)
class NoReply6:
    """Nothing is sent back; `reason` says why."""

    reason: str
    """One line for the log."""
    changes: tuple[Lease6, ...] = ()
    """Lease records changed all the same, for the store."""

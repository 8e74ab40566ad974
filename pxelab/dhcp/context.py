"""The vocabulary of the DHCP core: this server's subnet (DhcpContext), its mode, the inventory
as the core sees it (HostLookup), who sent a request (Sender), and the well-known ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from pxelab.dhcp.arch import BootFiles
from pxelab.errors import ConfigError

SERVER_PORT, CLIENT_PORT, PXE_PORT = 67, 68, 4011
LIMITED_BROADCAST = "255.255.255.255"
IPXE_SCRIPT = "boot.ipxe"
"""The HTTP path (under the server root) that iPXE clients are sent to instead of a binary."""
TFTP_OVER_HTTP = "tftp/"
"""The HTTP path prefix under which the TFTP root is served, for UEFI HTTP boot clients."""


class DhcpMode(StrEnum):
    """`full`: addresses and boot information; `proxy`: boot information only, beside another server."""

    FULL = "full"
    PROXY = "proxy"


class UnknownMacs(StrEnum):
    """What to do with a client whose MAC is not in the inventory."""

    SERVE = "serve"
    IGNORE = "ignore"


class BootHostInfo(Protocol):
    """What the DHCP and DHCPv6 policies read from an inventory host to choose its boot file."""

    @property
    def name(self) -> str:
        """The host's name, for log lines."""
        ...

    @property
    def pxeboot(self) -> bool:
        """False: give it an address but no boot file (it boots from disk)."""
        ...

    @property
    def loader(self) -> str | None:
        """`ipxe`, `grub`, or None to let the firmware decide (see BootFiles.for_firmware)."""
        ...

    @property
    def secure_boot(self) -> bool:
        """True: it boots with Secure Boot, so it needs the signed shim and GRUB."""
        ...


class HostInfo(BootHostInfo, Protocol):
    """What the DHCP policy reads from an inventory host."""

    @property
    def ip(self) -> IPv4Address | None:
        """Its reserved address, or None to give it one from the pool."""
        ...


class HostLookup(Protocol):
    """The inventory as the DHCP core sees it; called per request, so it answers from memory."""

    def lookup(self, mac: str) -> HostInfo | None:
        """The host with this MAC (lowercase "aa:bb:..."), or None when unknown."""
        ...

    def reserved(self) -> Mapping[IPv4Address, str]:
        """Every reserved address and the MAC it is reserved for."""
        ...


@dataclass(frozen=True)
class DhcpContext:
    """Everything the DHCP policy needs to know about this server and one subnet it serves."""

    server_ip: IPv4Address
    """This server's address on the served interface: server id, siaddr, option 66."""
    network: IPv4Network
    """The served subnet; option 1 is its netmask."""
    pool_start: IPv4Address
    """First address handed to hosts without a reservation."""
    pool_end: IPv4Address
    """Last address of the pool, inclusive."""
    router: IPv4Address | None = None
    """Default gateway (option 3), or None to send none."""
    dns: tuple[IPv4Address, ...] = ()
    """DNS servers (option 6); empty sends none."""
    lease_time: int = 3600
    """Seconds a binding lasts (option 51)."""
    http_port: int = 80
    """Port of pxelab's HTTP server, used in the URLs given to iPXE and UEFI HTTP clients."""
    boot_files: BootFiles = field(default_factory=BootFiles)
    """Boot file per firmware family."""
    offer_hold: float = 60.0
    """Seconds an offered address stays reserved for the client waiting to REQUEST it."""
    mode: DhcpMode = DhcpMode.FULL
    """Full DHCP, or proxyDHCP (boot information only; the pool is not used)."""
    unknown_macs: UnknownMacs = UnknownMacs.SERVE
    """Whether clients missing from the inventory are answered at all."""
    relayed: bool = False
    """The subnet is reached through relays (giaddr), so `server_ip` is not in it."""
    log_server: bool = False
    """Hand out `server_ip` as the log server (option 7): pxelab's syslog receiver is on 514."""

    def __post_init__(self) -> None:
        net = self.network
        keys = (
            ("pool_start", "pool_end") if self.relayed else ("server_ip", "pool_start", "pool_end")
        )
        for key in keys:
            if getattr(self, key) not in net:
                raise ConfigError(f"dhcp {key} {getattr(self, key)} is not in network {net}")
        if self.pool_end < self.pool_start:
            raise ConfigError(
                f"dhcp pool_end {self.pool_end} is before pool_start {self.pool_start}"
            )
        if net.prefixlen < 31:
            for edge in (net.network_address, net.broadcast_address):
                if self.pool_start <= edge <= self.pool_end:
                    raise ConfigError(f"dhcp pool {self.pool_start}-{self.pool_end} holds {edge}")
        if not 0 < self.lease_time < 2**32 - 1:
            raise ConfigError(f"dhcp lease_time {self.lease_time} is not a positive 32-bit count")
        if not 0 < self.http_port < 65536:
            raise ConfigError(f"dhcp http_port {self.http_port} is not a TCP port")

    def url(self, path: str) -> str:
        """An http:// URL on pxelab's HTTP server."""
        return f"http://{self.server_ip}:{self.http_port}/{path.lstrip('/')}"


@dataclass(frozen=True)
class Sender:
    """Where a request came from and where it arrived."""

    address: str
    """The source IPv4 address of the datagram ("0.0.0.0" from a client with no address)."""
    port: int
    """Its source UDP port (68 from a client, 67 from a relay)."""
    interface: str
    """The interface it arrived on: picks the local subnet of a request that no relay forwarded."""
    server_port: int = SERVER_PORT
    """The port it was sent to: 67, or 4011 (the PXE boot server port, proxy mode)."""

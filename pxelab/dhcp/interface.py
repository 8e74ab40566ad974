"""Read a network interface's IPv4 address and prefix, so `--interface` alone can set up DHCP.

Uses the SIOCGIFADDR/SIOCGIFNETMASK ioctls of the current network namespace (no subprocess).
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface

from pxelab.errors import ConfigError

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
IFNAMSIZ = 16


def interface_ipv4(interface: str) -> IPv4Interface:
    """The primary IPv4 address of `interface` with its prefix, e.g. IPv4Interface("10.0.0.1/24").

    Raises ConfigError naming the interface when it does not exist or has no IPv4 address.
    """
    name = interface.encode()
    if not name or len(name) >= IFNAMSIZ or b"/" in name or b"\0" in name:
        raise ConfigError(f"interface {interface!r} is not a valid interface name")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        address = _query(sock, SIOCGIFADDR, name, interface)
        netmask = _query(sock, SIOCGIFNETMASK, name, interface)
    return IPv4Interface(f"{address}/{netmask}")


def _query(sock: socket.socket, request: int, name: bytes, interface: str) -> IPv4Address:
    """One ifreq ioctl returning a sockaddr_in; the address is at bytes 20..24 of the result."""
    ifreq = struct.pack(f"{IFNAMSIZ}s16s", name, b"")
    try:
        result = fcntl.ioctl(sock.fileno(), request, ifreq)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise ConfigError(f"interface {interface!r} does not exist") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"interface {interface!r} has no IPv4 address") from None
        raise ConfigError(f"cannot read the IPv4 address of {interface!r}: {exc}") from exc
    return IPv4Address(result[IFNAMSIZ + 4 : IFNAMSIZ + 8])

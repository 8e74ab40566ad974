"""Read a network interface's IPv4 address and prefix (so `--interface` alone can set up DHCP)
and its MAC, in the current network namespace: ioctls and sysfs, no subprocess.
"""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from pxelab.errors import ConfigError

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
IFNAMSIZ = 16


def interface_ipv4(interface: str) -> IPv4Interface:
    """The primary IPv4 address of `interface` with its prefix, e.g. IPv4Interface("10.0.0.1/24").

    Raises ConfigError naming the interface when it does not exist or has no IPv4 address.
    """
    name = _checked_name(interface)
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


def interface_mac(interface: str) -> bytes:
    """The interface's 6-byte hardware address, from sysfs.

    Raises ConfigError naming the interface when it does not exist or has no such address.
    """
    _checked_name(interface)
    try:
        text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"interface {interface!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the MAC of {interface!r}: {exc}") from None
    try:
        mac = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        mac = b""
    if len(mac) != 6:
        raise ConfigError(f"interface {interface!r} has no Ethernet address ({text!r})")
    return mac


def _checked_name(interface: str) -> bytes:
    """The name as bytes; ConfigError when it cannot be an interface name (empty, too long, "/")."""
    name = interface.encode()
    if not name or len(name) >= IFNAMSIZ or b"/" in name or b"\0" in name or name in (b".", b".."):
        raise ConfigError(f"interface {interface!r} is not a valid interface name")
    return name

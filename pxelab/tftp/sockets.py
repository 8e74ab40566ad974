"""UDP sockets for the TFTP adapter: bound, optionally tied to a device and a peer; path MTU."""

from __future__ import annotations

import socket
import sys

__all__ = ["HEADERS", "Address", "path_mtu", "peer", "udp_socket"]

Address = tuple[str, int]

_IP_MTU = 14
"""getsockopt(IPPROTO_IP, IP_MTU) from <linux/in.h>: path MTU of a connected socket."""
HEADERS = 20 + 8 + 4
"""IPv4 + UDP + TFTP DATA header bytes: blksize + HEADERS must fit in the path MTU."""


def udp_socket(
    host: str, port: int, interface: str | None, *, connect: Address | None = None
) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port), optionally tied to a device and peer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if interface is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((host, port))
        if connect is not None:
            sock.connect(connect)
    except BaseException:
        sock.close()
        raise
    return sock


def path_mtu(sock: socket.socket) -> int | None:
    """Path MTU towards the connected peer (Linux, IPv4); None when unknown."""
    if not sys.platform.startswith("linux") or sock.family != socket.AF_INET:
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_IP, _IP_MTU)
    except OSError:
        return None


def peer(addr: Address) -> str:
    """host:port, for log lines."""
    return f"{addr[0]}:{addr[1]}"

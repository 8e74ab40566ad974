"""UDP sockets for the TFTP adapter: the listener (with IP_PKTINFO / IPV6_RECVPKTINFO), transfer
sockets, path MTU."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import sys
from collections.abc import Callable

__all__ = ["Address", "Listener", "path_mtu", "peer", "udp_socket"]

log = logging.getLogger("pxelab.tftp")

Address = tuple[str, int]

_IP_MTU = 14
"""getsockopt(IPPROTO_IP, IP_MTU) from <linux/in.h>: path MTU of a connected socket."""
_IPV6_MTU = 24
"""getsockopt(IPPROTO_IPV6, IPV6_MTU) from <linux/in6.h>: the same for IPv6."""
_IPV6_HEADER_EXTRA = 20
"""An IPv6 header is 20 bytes longer than an IPv4 one."""


def udp_socket(
    host: str, port: int, interface: str | None, *, connect: Address | None = None
) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port), optionally tied to a device and peer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:  # beside an IPv4 socket on the same port
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
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
    """Path MTU towards the connected peer (Linux), as for IPv4: an IPv6 path's MTU less the
    20 bytes its longer header takes; None when unknown."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if sock.family == socket.AF_INET6:
            return sock.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU) - _IPV6_HEADER_EXTRA
        if sock.family == socket.AF_INET:
            return sock.getsockopt(socket.IPPROTO_IP, _IP_MTU)
    except OSError:
        return None
    return None


def peer(addr: Address) -> str:
    """host:port, for log lines."""
    return f"{addr[0]}:{addr[1]}"


_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
"""IP_PKTINFO from <linux/in.h>: the destination address of each received datagram."""
_CMSG_SPACE = socket.CMSG_SPACE(20)
"""Room for one struct in_pktinfo (12 bytes) or in6_pktinfo (20 bytes)."""
_IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
_IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
_MAX_DATAGRAM = 65536
_BATCH = 64
"""Datagrams read per wake-up of the listener."""


class Listener:
    """The well-known port: reads requests with the address they were sent to (IP_PKTINFO)."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_datagram: Callable[[bytes, Address, str | None], None],
    ) -> None:
        self._on_datagram = on_datagram
        self._sock = sock
        self._loop = loop
        self.port: int = sock.getsockname()[1]
        """The bound UDP port."""
        # Only a wildcard socket needs to learn which of the host's addresses was asked.
        self._pktinfo = sock.getsockname()[0] in ("0.0.0.0", "::")
        if self._pktinfo and sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVPKTINFO, 1)
        elif self._pktinfo:
            sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(_BATCH):
            try:
                if self._pktinfo:
                    data, ancdata, _, addr = self._sock.recvmsg(_MAX_DATAGRAM, _CMSG_SPACE)
                    local = _destination(ancdata)
                else:
                    data, addr = self._sock.recvfrom(_MAX_DATAGRAM)
                    local = None
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("TFTP listener socket error: %s", exc)
                return
            self._on_datagram(data, addr, local)

    def send(self, data: bytes, client: Address, local: str | None) -> None:
        """Send from the well-known port, from `local` when given (so the client sees it)."""
        try:
            if self._pktinfo and local is not None and ":" in local:
                info = struct.pack("=16si", socket.inet_pton(socket.AF_INET6, local), 0)
                self._sock.sendmsg([data], [(socket.IPPROTO_IPV6, _IPV6_PKTINFO, info)], 0, client)
            elif self._pktinfo and local is not None:
                info = struct.pack("=i4s4s", 0, socket.inet_aton(local), bytes(4))
                self._sock.sendmsg([data], [(socket.IPPROTO_IP, _IP_PKTINFO, info)], 0, client)
            else:
                self._sock.sendto(data, client)
        except OSError as exc:
            log.debug("%s: cannot answer: %s", peer(client), exc)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def _destination(ancdata: list[tuple[int, int, bytes]]) -> str | None:
    """The local address to answer from, from IP_PKTINFO's ipi_spec_dst: the address a unicast
    datagram was sent to, or the one routing picks for a broadcast (Linux fib_compute_spec_dst)."""
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IP and kind == _IP_PKTINFO and len(value) >= 12:
            return socket.inet_ntoa(value[4:8])
        if level == socket.IPPROTO_IPV6 and kind == _IPV6_PKTINFO and len(value) >= 16:
            local = socket.inet_ntop(socket.AF_INET6, value[:16])
            # A link-local address needs its scope to be bound: let the kernel pick instead.
            return None if local.startswith("fe80:") else local
    return None

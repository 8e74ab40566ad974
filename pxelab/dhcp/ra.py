"""A minimal IPv6 router advertisement responder, so iPXE does not wait ~13 s for one.

Like dnsmasq's `enable-ra`: every router solicitation on the interface gets an RA with router
lifetime 0 (not a default router), no prefixes, and no M/O flags (no DHCPv6), which tells iPXE at
once that there is no IPv6 configuration to wait for. `build_ra` and `is_solicitation` are pure.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time

from pxelab.dhcp.interface import interface_mac
from pxelab.errors import ConfigError

log = logging.getLogger("pxelab.dhcp")

ICMPV6_ROUTER_SOLICITATION = 133
ICMPV6_ROUTER_ADVERTISEMENT = 134
OPTION_SOURCE_LINK_LAYER = 1
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
ND_HOP_LIMIT = 255
"""RFC 4861: RAs are sent, and RSs accepted, only with hop limit 255."""
MIN_INTERVAL = 1.0
"""Seconds between two RAs at least (they are multicast: one answers every host soliciting).
RFC 4861 asks 3 s between unsolicited-burst RAs; 1 s keeps a booting iPXE from waiting long."""


def is_solicitation(data: bytes) -> bool:
    """Whether an ICMPv6 message (the raw socket gives it without the IPv6 header) is an RS."""
    return len(data) >= 8 and data[0] == ICMPV6_ROUTER_SOLICITATION and data[1] == 0


def build_ra(mac: bytes) -> bytes:
    """An RA: hop limit unspecified, no flags, router lifetime 0, source link-layer option.

    The checksum is left 0: the kernel fills it in for ICMPv6 raw sockets.
    """
    header = struct.pack("!BBHBBHII", ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, 0, 0, 0, 0, 0)
    option = struct.pack("!BB6s", OPTION_SOURCE_LINK_LAYER, 1, mac[:6].ljust(6, b"\0"))
    return header + option


class RaResponder:
    """Answers router solicitations on one interface; `close()` stops it."""

    def __init__(self, sock: socket.socket, interface: str, index: int, mac: bytes) -> None:
        self.sock = sock
        self.interface = interface
        self.index = index
        self.ra = build_ra(mac)
        self.answered = 0
        self._last = float("-inf")
        self._closed = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, addr = self.sock.recvfrom(1500)
        except OSError as exc:
            log.debug("RA socket error: %s", exc)
            return
        if not is_solicitation(data):
            return
        now = time.monotonic()
        if now - self._last < MIN_INTERVAL:
            log.debug(
                "router solicitation from %s: an RA went out %.2f s ago", addr[0], now - self._last
            )
            return
        self._last = now
        try:
            # To all nodes: a soliciting host may have no address yet (source ::).
            self.sock.sendto(self.ra, (ALL_NODES, 0, 0, self.index))
            self.answered += 1
            log.info("router solicitation from %s: RA (lifetime 0, no prefixes)", addr[0])
        except OSError as exc:
            log.warning("cannot send an RA to %s on %s: %s", addr[0], self.interface, exc)

    def close(self) -> None:
        """Stop answering; safe to call more than once."""
        if not self._closed.done():
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Return once the socket is closed."""
        await asyncio.shield(self._closed)


async def start_ra(interface: str) -> RaResponder:
    """Listen for router solicitations on `interface` (needs CAP_NET_RAW and IPv6 on it)."""
    index = socket.if_nametoindex(interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ND_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ND_HOP_LIMIT)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        group = socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
        sock.setblocking(False)
        mac = interface_mac(interface)
    except ConfigError as exc:
        sock.close()
        raise OSError(f"router advertisements on {interface!r}: {exc}") from None
    except BaseException:
        sock.close()
        raise
    log.info("router advertisements on %s", interface)
    return RaResponder(sock, interface, index, mac)

"""A minimal IPv6 router advertisement responder, so iPXE does not wait ~13 s for one.

Without `ipv6_prefix`, like dnsmasq's `enable-ra`: every router solicitation gets an RA with router
lifetime 0 (not a default router), no prefixes and no M/O flags, which tells iPXE at once that
there is no IPv6 configuration to wait for. With a prefix, the RA carries it (on-link, no SLAAC)
and the M and O flags (addresses and options from DHCPv6); with `ipv6_router` it also names this
server as the default router. `build_ra` and `is_solicitation` are pure.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from ipaddress import IPv6Network

from pxelab.dhcp.interface import interface_mac
from pxelab.errors import ConfigError

log = logging.getLogger("pxelab.dhcp")

ICMPV6_ROUTER_SOLICITATION = 133
ICMPV6_ROUTER_ADVERTISEMENT = 134
OPTION_SOURCE_LINK_LAYER = 1
OPTION_PREFIX_INFORMATION = 3
FLAG_MANAGED, FLAG_OTHER = 0x80, 0x40
"""RA flags: M (addresses from DHCPv6) and O (other configuration from DHCPv6)."""
PREFIX_ON_LINK = 0x80
"""Prefix information flag L; A (SLAAC) stays off so addresses come from DHCPv6 only."""
ROUTER_LIFETIME = 1800
"""Seconds a client keeps this server as its default router (with `ipv6_router`)."""
PREFIX_LIFETIME = 86400
"""Valid and preferred lifetime of the advertised prefix, seconds."""
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


def build_ra(mac: bytes, prefix: IPv6Network | None = None, *, router: bool = False) -> bytes:
    """An RA: hop limit unspecified, the source link-layer option; with `prefix`, the M and O
    flags and the prefix (on-link); a router lifetime only with `router` (and a prefix).

    The checksum is left 0: the kernel fills it in for ICMPv6 raw sockets.
    """
    flags = 0 if prefix is None else FLAG_MANAGED | FLAG_OTHER
    lifetime = ROUTER_LIFETIME if router and prefix is not None else 0
    header = struct.pack("!BBHBBHII", ICMPV6_ROUTER_ADVERTISEMENT, 0, 0, 0, flags, lifetime, 0, 0)
    option = struct.pack("!BB6s", OPTION_SOURCE_LINK_LAYER, 1, mac[:6].ljust(6, b"\0"))
    if prefix is None:
        return header + option
    info = struct.pack(
        "!BBBBIII16s",
        OPTION_PREFIX_INFORMATION,
        4,
        prefix.prefixlen,
        PREFIX_ON_LINK,
        PREFIX_LIFETIME,
        PREFIX_LIFETIME,
        0,
        prefix.network_address.packed,
    )
    return header + option + info


class RaResponder:
    """Answers router solicitations on one interface; `close()` stops it."""

    def __init__(
        self,
        sock: socket.socket,
        interface: str,
        index: int,
        mac: bytes,
        prefix: IPv6Network | None = None,
        router: bool = False,
    ) -> None:
        self.sock = sock
        self.interface = interface
        self.index = index
        self.ra = build_ra(mac, prefix, router=router)
        self.what = "lifetime 0, no prefixes" if prefix is None else f"prefix {prefix}, M and O"
        if prefix is not None and router:
            self.what += ", default router"
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
            log.info("router solicitation from %s: RA (%s)", addr[0], self.what)
        except OSError as exc:
            log.warning("cannot send an RA to %s on %s: %s", addr[0], self.interface, exc)

    def advertise(self) -> None:
        """Send one RA to all nodes now (unsolicited)."""
        try:
            self.sock.sendto(self.ra, (ALL_NODES, 0, 0, self.index))
            self._last = time.monotonic()
        except OSError as exc:
            log.warning("cannot send an RA on %s: %s", self.interface, exc)

    def close(self) -> None:
        """Stop answering; safe to call more than once."""
        if not self._closed.done():
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Return once the socket is closed."""
        await asyncio.shield(self._closed)


async def start_ra(
    interface: str, prefix: IPv6Network | None = None, *, router: bool = False
) -> RaResponder:
    """Listen for router solicitations on `interface` (needs CAP_NET_RAW and IPv6 on it); the
    RA carries `prefix` and, with `router`, a router lifetime (see `build_ra`)."""
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
    responder = RaResponder(sock, interface, index, mac, prefix, router)
    if prefix is not None:
        responder.advertise()  # hosts already up learn the prefix without soliciting
    return responder

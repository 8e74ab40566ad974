"""The DHCP transport: one UDP socket on an interface, bytes in -> `evaluate` -> bytes out.

All decisions live in policy.py; this module only receives, logs and sends.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import cast

from pxelab.dhcp.leases import LeaseTable
from pxelab.dhcp.options import message_type
from pxelab.dhcp.packet import ZERO_IP, DhcpPacket, OptionCode, build, parse
from pxelab.dhcp.policy import DhcpContext, DhcpReply, HostLookup, describe_arch, evaluate
from pxelab.errors import MalformedPacket

log = logging.getLogger("pxelab.dhcp")

EXPIRE_EVERY = 60.0
"""Seconds between sweeps that forget expired leases (expired ones are free even before)."""


class _DhcpProtocol(asyncio.DatagramProtocol):
    """Receive, decide, send; never lets one datagram stop the server."""

    def __init__(
        self,
        ctx: DhcpContext,
        hosts: HostLookup,
        leases: LeaseTable,
        clock: Callable[[], float],
    ) -> None:
        self.ctx = ctx
        self.hosts = hosts
        self.leases = leases
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._next_sweep = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport on 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        log.debug("DHCP socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        sender = f"{addr[0]}:{addr[1]}"
        try:
            request = parse(data)
        except MalformedPacket as exc:
            log.warning("malformed DHCP datagram from %s: %s", sender, exc)
            return
        try:
            self._handle(request, sender)
        except Exception:
            log.exception("DHCP request from %s (%s) failed", sender, request.mac)

    def _handle(self, request: DhcpPacket, sender: str) -> None:
        now = self.clock()
        if now >= self._next_sweep:
            self.leases.expire(now)
            self._next_sweep = now + EXPIRE_EVERY
        outcome = evaluate(request, self.ctx, self.hosts, self.leases, now)
        head = f"{_kind(request)} from {request.mac} (arch {describe_arch(request)})"
        if not isinstance(outcome, DhcpReply):
            log.info("%s: no reply: %s", head, outcome.reason)
            return
        log.info("%s: %s", head, _summary(outcome))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(build(outcome.packet), outcome.destination)


def _kind(packet: DhcpPacket) -> str:
    """The message type name for logs, whatever the packet holds."""
    try:
        kind = message_type(packet)
    except MalformedPacket:
        return "DHCP(invalid type)"
    return kind.name if kind is not None else "BOOTP"


def _summary(reply: DhcpReply) -> str:
    """One line on what is sent: type, address, boot file, destination."""
    packet = reply.packet
    parts = [_kind(packet)]
    if packet.yiaddr != ZERO_IP:
        parts.append(str(packet.yiaddr))
    bootfile = packet.option(OptionCode.BOOTFILE_NAME)
    if bootfile is not None:
        parts.append(f"file={bootfile.decode(errors='replace')}")
    if reply.note:
        parts.append(f"[{reply.note}]")
    parts.append(f"to {reply.destination[0]}:{reply.destination[1]}")
    return " ".join(parts)


class DhcpServer:
    """A running DHCP listener; `close()` stops it, `wait_closed()` waits for the socket to go."""

    def __init__(self, protocol: _DhcpProtocol, transport: asyncio.DatagramTransport) -> None:
        self._protocol = protocol
        self._transport = transport

    @property
    def leases(self) -> LeaseTable:
        """The live lease table (for status pages; do not mutate from outside the loop)."""
        return self._protocol.leases

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful with port=0 in tests)."""
        port: int = self._transport.get_extra_info("sockname")[1]
        return port

    def close(self) -> None:
        """Stop receiving; safe to call more than once."""
        if not self._transport.is_closing():
            self._transport.close()

    async def wait_closed(self) -> None:
        """Return once the socket is closed."""
        await asyncio.shield(self._protocol.closed)


def open_dhcp_socket(interface: str, port: int) -> socket.socket:
    """A UDP socket on 0.0.0.0:`port` that sends and receives broadcasts on `interface` only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            # Without this a broadcast reply never reaches a client that has no address yet.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot bind the DHCP socket to interface {interface!r}: {exc.strerror}"
            ) from exc
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot bind the DHCP socket to 0.0.0.0:{port}: {exc.strerror}"
            ) from exc
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def start_dhcp(
    ctx: DhcpContext,
    hosts: HostLookup,
    interface: str,
    *,
    port: int = 67,
    leases: LeaseTable | None = None,
    clock: Callable[[], float] = time.time,
) -> DhcpServer:
    """Serve DHCP on `interface`; `leases` defaults to an empty in-memory table for `ctx`."""
    if leases is None:
        leases = LeaseTable(
            ctx.pool_start, ctx.pool_end, server_ip=ctx.server_ip, offer_hold=ctx.offer_hold
        )
    sock = open_dhcp_socket(interface, port)
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _DhcpProtocol(ctx, hosts, leases, clock), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    log.info(
        "DHCP on %s port %d: server %s, pool %s-%s",
        interface,
        protocol.transport.get_extra_info("sockname")[1] if protocol.transport else port,
        ctx.server_ip,
        ctx.pool_start,
        ctx.pool_end,
    )
    return DhcpServer(protocol, transport)

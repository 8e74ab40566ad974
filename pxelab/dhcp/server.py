"""The DHCP transport: UDP sockets on one interface, bytes in -> `evaluate` -> bytes out.

All decisions live in policy.py and proxy.py; this module receives, picks the subnet (by giaddr),
logs, records the timeline, adds the ARP entry for unicast replies and sends.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from ipaddress import IPv4Address

from pxelab.dhcp.leases import LeaseTable
from pxelab.dhcp.options import message_type
from pxelab.dhcp.packet import ZERO_IP, DhcpPacket, MessageType, OptionCode, build, parse
from pxelab.dhcp.policy import (
    CLIENT_PORT,
    LIMITED_BROADCAST,
    PXE_PORT,
    DhcpContext,
    DhcpMode,
    DhcpReply,
    HostInfo,
    HostLookup,
    NoReply,
    describe_arch,
    evaluate,
)
from pxelab.dhcp.store import LeaseStore
from pxelab.errors import MalformedPacket
from pxelab.events import Event, Timeline

log = logging.getLogger("pxelab.dhcp")

EXPIRE_EVERY = 60.0
"""Seconds between sweeps that forget expired leases (expired ones are free even before)."""
SIOCSARP = 0x8955
ATF_COM = 0x02
ARPHRD_ETHER = 1


class Pool:
    """One served subnet: its context and its lease table."""

    def __init__(self, ctx: DhcpContext, leases: LeaseTable) -> None:
        self.ctx = ctx
        self.leases = leases


RESERVED_TTL = 0.5
"""Seconds the inventory's reserved-address map is reused (the inventory rescans as often)."""


class CachedHosts:
    """The inventory with `reserved()` rebuilt at most every RESERVED_TTL seconds.

    Rebuilding it per request was most of the cost of a DISCOVER (a dict of IPv4Address keys).
    """

    def __init__(self, hosts: HostLookup, clock: Callable[[], float] = time.monotonic) -> None:
        self.hosts = hosts
        self.clock = clock
        self._reserved: Mapping[IPv4Address, str] = {}
        self._until = float("-inf")

    def lookup(self, mac: str) -> HostInfo | None:
        """The host with this MAC, straight from the inventory."""
        return self.hosts.lookup(mac)

    def reserved(self) -> Mapping[IPv4Address, str]:
        """Every reserved address and its MAC, at most RESERVED_TTL seconds old."""
        now = self.clock()
        if now >= self._until:
            self._reserved = self.hosts.reserved()
            self._until = now + RESERVED_TTL
        return self._reserved


class _Dhcp:
    """The state shared by the sockets of one DHCP server: subnets, inventory, clock, timeline."""

    def __init__(
        self,
        pools: Sequence[Pool],
        hosts: HostLookup,
        clock: Callable[[], float],
        timeline: Timeline | None,
    ) -> None:
        self.pools = pools
        self.hosts = CachedHosts(hosts)
        self.clock = clock
        self.timeline = timeline
        self._next_sweep = 0.0

    def pool_for(self, request: DhcpPacket, local: Pool) -> Pool | None:
        """`local` (the receiving interface's subnet) for a direct request, else giaddr's subnet."""
        if request.giaddr == ZERO_IP:
            return local
        for pool in self.pools:
            if request.giaddr in pool.ctx.network:
                return pool
        return None

    def handle(self, request: DhcpPacket, port: int, local: Pool) -> DhcpReply | NoReply:
        now = self.clock()
        if now >= self._next_sweep:
            for pool in self.pools:
                pool.leases.expire(now)
            self._next_sweep = now + EXPIRE_EVERY
        chosen = self.pool_for(request, local)
        if chosen is None:
            return NoReply(f"relayed by {request.giaddr}, which is in no configured subnet")
        outcome = evaluate(request, chosen.ctx, self.hosts, chosen.leases, now, port=port)
        if isinstance(outcome, DhcpReply) and self.timeline is not None:
            self._record(now, outcome)
        return outcome

    def _record(self, now: float, reply: DhcpReply) -> None:
        """One timeline event per OFFER/ACK/NAK ("ACK 10.0.0.5 ipxe.efi"); an ACK binds ip -> mac."""
        packet = reply.packet
        kind = _kind(packet)
        ip = str(packet.yiaddr) if packet.yiaddr != ZERO_IP else ""
        bootfile = packet.option(OptionCode.BOOTFILE_NAME)
        file = bootfile.decode(errors="replace") if bootfile is not None else ""
        assert self.timeline is not None
        mac = packet.mac
        event = Event(now, "dhcp", mac=mac, ip=ip, message_type=kind, address=ip, file=file)
        self.timeline.record(event)
        if kind == MessageType.ACK.name and ip:
            self.timeline.bind(ip, mac)


class _Endpoint:
    """One socket: drain every queued datagram per wake-up, decide, send; one bad datagram never
    stops the server. (A loop reader instead of a DatagramProtocol: one epoll wake-up serves a
    whole burst, which roughly halves the per-request cost under load.)
    """

    BURST = 64
    """Datagrams read per wake-up at most, so other tasks still get their turn."""

    def __init__(
        self, server: _Dhcp, sock: socket.socket, port: int, interface: str, local: Pool
    ) -> None:
        self.server = server
        self.sock = sock
        self.port = port
        self.interface = interface
        self.local = local
        self.bound_port: int = sock.getsockname()[1]
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        """Stop reading and close the socket; safe to call more than once."""
        if not self.closed.done():
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.closed.set_result(None)

    def _readable(self) -> None:
        for _ in range(self.BURST):
            try:
                data, addr = self.sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("DHCP socket error: %s", exc)
                return
            self.datagram_received(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = parse(data)
        except MalformedPacket as exc:
            log.warning("malformed DHCP datagram from %s:%s: %s", addr[0], addr[1], exc)
            return
        try:
            self._handle(request, addr)
        except Exception:
            log.exception("DHCP request from %s:%s (%s) failed", addr[0], addr[1], request.mac)

    def _handle(self, request: DhcpPacket, sender: tuple[str, int]) -> None:
        outcome = self.server.handle(request, self.port, self.local)
        logging_info = log.isEnabledFor(logging.INFO)  # the log line costs as much as the reply
        head = ""
        if logging_info:
            head = f"{_kind(request)} from {request.mac} (arch {describe_arch(request)})"
            if self.port == PXE_PORT:
                head += f" on port {PXE_PORT}"
        if not isinstance(outcome, DhcpReply):
            if logging_info:
                log.info("%s: no reply: %s", head, outcome.reason)
            return
        destination = outcome.destination
        if self.port == PXE_PORT and request.giaddr == ZERO_IP:
            destination = sender  # PXE spec: a boot server answers the request's source
        elif outcome.link_unicast and not self._map_address(destination[0], request):
            destination = (LIMITED_BROADCAST, CLIENT_PORT)
        if logging_info:
            log.info("%s: %s", head, _summary(outcome, destination))
        if self.closed.done():
            return
        try:
            self.sock.sendto(build(outcome.packet), destination)
        except OSError as exc:  # a full send buffer or an unreachable relay: the client retries
            log.warning("cannot send %s to %s:%s: %s", _kind(outcome.packet), *destination, exc)

    def _map_address(self, ip: str, request: DhcpPacket) -> bool:
        """Add the ARP entry ip -> chaddr, so a unicast reaches a client without an address."""
        try:
            set_arp(self.sock.fileno(), self.interface, IPv4Address(ip), request.chaddr[:6])
        except OSError as exc:
            log.debug("cannot add ARP entry %s -> %s: %s; broadcasting", ip, request.mac, exc)
            return False
        return True


def set_arp(fd: int, interface: str, ip: IPv4Address, mac: bytes) -> None:
    """SIOCSARP: map `ip` to `mac` on `interface` (what dnsmasq does before a unicast OFFER)."""
    protocol_address = struct.pack("=HH4s8x", socket.AF_INET, 0, ip.packed)
    hardware_address = struct.pack("=H6s8x", ARPHRD_ETHER, mac)
    arpreq = struct.pack(
        "=16s16si16s16s", protocol_address, hardware_address, ATF_COM, b"", interface.encode()
    )
    fcntl.ioctl(fd, SIOCSARP, arpreq)


def _kind(packet: DhcpPacket) -> str:
    """The message type name for logs, whatever the packet holds."""
    try:
        kind = message_type(packet)
    except MalformedPacket:
        return "DHCP(invalid type)"
    return kind.name if kind is not None else "BOOTP"


def _summary(reply: DhcpReply, destination: tuple[str, int] | None = None) -> str:
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
    if destination is not None:
        parts.append(f"to {destination[0]}:{destination[1]}")
    return " ".join(parts)


class DhcpServer:
    """A running DHCP listener; `close()` stops it, `wait_closed()` waits for the sockets to go."""

    def __init__(self, server: _Dhcp, endpoints: list[_Endpoint], store: LeaseStore | None) -> None:
        self._server = server
        self._endpoints = endpoints
        self._store = store

    @property
    def leases(self) -> LeaseTable:
        """The local subnet's live lease table (do not mutate from outside the loop)."""
        return self._server.pools[0].leases

    @property
    def pools(self) -> Sequence[Pool]:
        """Every served subnet, the local one first."""
        return self._server.pools

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful with port=0 in tests)."""
        return self._endpoints[0].bound_port

    def close(self) -> None:
        """Stop receiving; safe to call more than once."""
        for endpoint in self._endpoints:
            endpoint.close()

    async def wait_closed(self) -> None:
        """Return once the sockets are closed (and the lease database is checkpointed)."""
        for endpoint in self._endpoints:
            await asyncio.shield(endpoint.closed)
        if self._store is not None:
            self._store.close()
            self._store = None


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


def make_pools(contexts: Sequence[DhcpContext], store: LeaseStore | None = None) -> list[Pool]:
    """A lease table per subnet, filled from `store` (each lease goes to its subnet's table)."""
    stored = store.load() if store is not None else []
    pools = []
    for ctx in contexts:
        mine = [lease for lease in stored if lease.ip in ctx.network]
        table = LeaseTable(
            ctx.pool_start,
            ctx.pool_end,
            server_ip=ctx.server_ip,
            offer_hold=ctx.offer_hold,
            leases=mine,
            on_change=store.save if store is not None else None,
        )
        pools.append(Pool(ctx, table))
    return pools


async def start_dhcp(
    ctx: DhcpContext,
    hosts: HostLookup,
    interface: str,
    *,
    port: int = 67,
    leases: LeaseTable | None = None,
    clock: Callable[[], float] = time.time,
    relayed: Sequence[DhcpContext] = (),
    store: LeaseStore | None = None,
    pxe_port: int | None = None,
    timeline: Timeline | None = None,
    more_interfaces: Sequence[tuple[str, DhcpContext]] = (),
) -> DhcpServer:
    """Serve DHCP on `interface` (subnet `ctx`) and on `more_interfaces` (each with its subnet);
    `relayed` are the subnets behind relays. One socket per interface and port.

    Leases come from `leases` (local subnet only), else from `store` (persisted), else memory.
    In proxy mode a second socket per interface serves `pxe_port` (4011 by default).
    """
    local_ctxs = [ctx, *(c for _, c in more_interfaces)]
    pools = make_pools([*local_ctxs, *relayed], store)
    if leases is not None:
        pools[0] = Pool(ctx, leases)
    server = _Dhcp(pools, hosts, clock, timeline)
    ports = [port]
    if ctx.mode is DhcpMode.PROXY:
        ports.append(PXE_PORT if pxe_port is None else pxe_port)
    names = [interface, *(name for name, _ in more_interfaces)]
    endpoints: list[_Endpoint] = []
    try:
        for name, pool in zip(names, pools, strict=False):
            for index, number in enumerate(ports):
                sock = open_dhcp_socket(name, number)
                logical = PXE_PORT if index == 1 else number
                endpoints.append(_Endpoint(server, sock, logical, name, pool))
    except BaseException:
        for endpoint in endpoints:
            endpoint.close()
        raise
    for name, pool in zip(names, pools, strict=False):
        bound = [str(e.bound_port) for e in endpoints if e.interface == name]
        log.info(
            "DHCP (%s) on %s port %s: server %s, pool %s-%s",
            ctx.mode.value,
            name,
            "+".join(bound),
            pool.ctx.server_ip,
            pool.ctx.pool_start,
            pool.ctx.pool_end,
        )
    for r in relayed:
        log.info("DHCP for relayed subnet %s: pool %s-%s", r.network, r.pool_start, r.pool_end)
    return DhcpServer(server, endpoints, store)

"""The DHCP transport: UDP sockets on one interface, bytes in -> `DhcpCore.handle` -> bytes out.

All decisions live in the core (policy.py); this module receives, stores the lease changes the
core made (awaiting the store before sending a reply that depends on them), logs, records the
timeline, adds the ARP entry for unicast replies and sends.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from pxelab.dhcp.context import (
    CLIENT_PORT,
    LIMITED_BROADCAST,
    PXE_PORT,
    DhcpContext,
    DhcpMode,
    HostInfo,
    HostLookup,
    Sender,
)
from pxelab.dhcp.leases import Lease, LeaseStore, LeaseTable, refusal
from pxelab.dhcp.options import message_type
from pxelab.dhcp.packet import ZERO_IP, DhcpPacket, MessageType, OptionCode, build, parse
from pxelab.dhcp.policy import DhcpCore, Pool
from pxelab.dhcp.reply import DhcpReply, NoReply, describe_arch
from pxelab.errors import MalformedPacket
from pxelab.events import Event, Timeline
from pxelab.sockbuf import deepen_receive_buffer

log = logging.getLogger("pxelab.dhcp")

SIOCSARP = 0x8955
ATF_COM = 0x02
ARPHRD_ETHER = 1
RESERVED_TTL = 0.5
"""Seconds the inventory's reserved-address map is reused (the inventory rescans as often)."""
Observer = Callable[[DhcpPacket, Sender, float], None]
"""Told of every parsed request before the core decides (the fleet's sightings)."""
MAX_DISTINCT_ERRORS = 256
"""Distinct internal errors whose traceback is logged; later ones are only counted."""


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


@dataclass(frozen=True)
class _Pending:
    """A decision waiting for its lease changes to be stored."""

    endpoint: _Endpoint
    """The socket that received the request (and sends the reply)."""
    request: DhcpPacket
    """The request, for the log line and the ARP entry."""
    outcome: DhcpReply | NoReply
    """What the core decided."""
    now: float
    """When it was decided."""


class _Endpoint:
    """One socket: drain every queued datagram per wake-up and hand it to the server. (A loop
    reader instead of a DatagramProtocol: one epoll wake-up serves a whole burst, which roughly
    halves the per-request cost under load.)
    """

    BURST = 64
    """Datagrams read per wake-up at most, so other tasks still get their turn."""

    def __init__(self, server: DhcpServer, sock: socket.socket, port: int, interface: str) -> None:
        self.server = server
        self.sock = sock
        self.port = port
        self.interface = interface
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
            self.server.datagram_received(self, data, addr)

    def send(self, packet: DhcpPacket, destination: tuple[str, int]) -> None:
        if self.closed.done():
            return
        try:
            self.sock.sendto(build(packet), destination)
        except OSError as exc:  # a full send buffer or an unreachable relay: the client retries
            log.warning("cannot send %s to %s:%s: %s", _kind(packet), *destination, exc)

    def map_address(self, ip: str, request: DhcpPacket) -> bool:
        """Add the ARP entry ip -> chaddr, so a unicast reaches a client without an address."""
        try:
            set_arp(self.sock.fileno(), self.interface, IPv4Address(ip), request.chaddr[:6])
        except OSError as exc:
            log.debug("cannot add ARP entry %s -> %s: %s; broadcasting", ip, request.mac, exc)
            return False
        return True


class DhcpServer:
    """A running DHCP listener: its sockets, the core, and the lease store the core's changes go
    to. `close()` stops it, `wait_closed()` waits for the sockets to go."""

    def __init__(
        self,
        core: DhcpCore,
        store: LeaseStore | None,
        clock: Callable[[], float],
        timeline: Timeline | None,
        observer: Observer | None = None,
    ) -> None:
        self.core = core
        self.observer = observer
        self.store = store
        self.clock = clock
        self.timeline = timeline
        self.errors = 0
        """Requests the core or the store failed on (also recorded as "error" timeline events)."""
        self._endpoints: list[_Endpoint] = []
        self._seen_errors: set[tuple[str, str, int]] = set()
        self._pending: deque[_Pending] = deque()
        self._committing = False
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        if store is not None:
            self._worker = asyncio.get_running_loop().create_task(self._commit_loop())

    def learn(self, stored: Sequence[Lease]) -> int:
        """Take in what the shared store holds that the tables do not know (leases granted by
        other instances); returns how many leases were news."""
        now, news = self.clock(), 0
        for lease in stored:
            for pool in self.core.pools:
                if lease.ip in pool.ctx.network and pool.leases.differs(lease, now):
                    pool.leases.learn(lease)
                    news += 1
        return news

    @property
    def leases(self) -> LeaseTable:
        """The local subnet's live lease table (do not mutate from outside the loop)."""
        return self.core.pools[0].leases

    @property
    def pools(self) -> Sequence[Pool]:
        """Every served subnet, the local one first."""
        return self.core.pools

    @property
    def endpoints(self) -> Sequence[_Endpoint]:
        """The sockets, one per interface and port."""
        return self._endpoints

    def add_endpoint(self, endpoint: _Endpoint) -> None:
        """Serve one more socket (start_dhcp adds them)."""
        self._endpoints.append(endpoint)

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful with port=0 in tests)."""
        return self._endpoints[0].bound_port

    def close(self) -> None:
        """Stop receiving; replies still waiting for the store are dropped. Safe to call twice."""
        for endpoint in self._endpoints:
            endpoint.close()
        if self._worker is not None:
            self._worker.cancel()

    async def wait_closed(self) -> None:
        """Return once the sockets are closed and no lease commit is under way."""
        for endpoint in self._endpoints:
            await asyncio.shield(endpoint.closed)
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)

    # -- receive, decide, store, send -------------------------------------------------------

    def datagram_received(self, endpoint: _Endpoint, data: bytes, addr: tuple[str, int]) -> None:
        try:
            request = parse(data)
        except MalformedPacket as exc:
            log.warning("malformed DHCP datagram from %s:%s: %s", addr[0], addr[1], exc)
            return
        now = self.clock()
        sender = Sender(addr[0], addr[1], endpoint.interface, endpoint.port)
        try:
            if self.observer is not None:
                self.observer(request, sender, now)
            outcome = self.core.handle(request, sender, now)
        except Exception as exc:  # a bug in the core: keep serving, say it once, count it
            what = f"{_kind(request)} from {request.mac} ({addr[0]}:{addr[1]})"
            self._failed(exc, what, now, request.mac)
            return
        item = _Pending(endpoint, request, outcome, now)
        if self.store is None or not (outcome.changes or self._pending or self._committing):
            self._finish(item)  # nothing to store, nothing queued before it: send right away
        else:
            self._pending.append(item)  # in order: a client's replies are never reordered
            self._wake.set()

    async def _commit_loop(self) -> None:
        """Store the queued decisions' lease changes in one commit per batch, then send them."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending)
                self._pending.clear()
                self._committing = True
                try:
                    await self._commit(batch)
                except Exception as exc:  # a bug here must not stop every later reply
                    self._failed(exc, f"committing {len(batch)} decision(s)", self.clock())
                finally:
                    self._committing = False

    async def _commit(self, batch: list[_Pending]) -> None:
        changes = [lease for item in batch for lease in item.outcome.changes]
        refused: list[Lease] = []
        if changes and self.store is not None:
            try:
                refused = list(dict.fromkeys(await self.store.commit_leases(changes, self.clock())))
            except Exception as exc:
                self._failed(exc, f"storing {len(changes)} lease change(s)", self.clock())
                batch = [item for item in batch if not item.outcome.changes]  # nothing stored
            for held in refused:  # once per lease, in order
                log.info("%s is held by %s in the lease store; learned", held.ip, held.mac)
                self.core.learn(held)
        for item in batch:
            why = refusal(item.outcome.changes, refused) if refused else None
            if why is not None:
                log.info(
                    "%s from %s: reply dropped: %s", _kind(item.request), item.request.mac, why
                )
                continue
            self._finish(item)

    def _finish(self, item: _Pending) -> None:
        """Log the outcome; for a reply, record it in the timeline and send it."""
        try:
            self._send(item)
        except Exception as exc:  # e.g. a reply the codec cannot build: a bug, not the client's
            what = f"{_kind(item.request)} from {item.request.mac}: sending the outcome"
            self._failed(exc, what, item.now, item.request.mac)

    def _send(self, item: _Pending) -> None:
        request, outcome, endpoint = item.request, item.outcome, item.endpoint
        logging_info = log.isEnabledFor(logging.INFO)  # the log line costs as much as the reply
        head = ""
        if logging_info:
            head = f"{_kind(request)} from {request.mac} (arch {describe_arch(request)})"
            if endpoint.port == PXE_PORT:
                head += f" on port {PXE_PORT}"
        if isinstance(outcome, NoReply):
            if logging_info:
                log.info("%s: no reply: %s", head, outcome.reason)
            return
        destination = outcome.destination
        if outcome.link_unicast and not endpoint.map_address(destination[0], request):
            destination = (LIMITED_BROADCAST, CLIENT_PORT)
        if logging_info:
            log.info("%s: %s", head, _summary(outcome, destination))
        if self.timeline is not None:
            _record(self.timeline, item.now, outcome)
        endpoint.send(outcome.packet, destination)

    def _failed(self, exc: Exception, what: str, now: float, mac: str = "") -> None:
        """Count an internal error; log its traceback the first time this error is seen."""
        self.errors += 1
        frames = traceback.extract_tb(exc.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno or 0) if frames else ("", 0)
        key = (type(exc).__name__, *where)
        if key not in self._seen_errors and len(self._seen_errors) < MAX_DISTINCT_ERRORS:
            self._seen_errors.add(key)
            log.error("DHCP: %s failed (logged once, counted after):", what, exc_info=exc)
        else:
            log.debug("DHCP: %s failed again: %s: %s", what, type(exc).__name__, exc)
        if self.timeline is not None:
            error = f"DHCP: {what} failed: {type(exc).__name__}"
            self.timeline.record(Event(now, "error", mac=mac, error=error, service="dhcp"))


def _record(timeline: Timeline, now: float, reply: DhcpReply) -> None:
    """One timeline event per OFFER/ACK/NAK ("ACK 10.0.0.5 ipxe.efi"); an ACK binds ip -> mac."""
    packet = reply.packet
    kind = _kind(packet)
    ip = str(packet.yiaddr) if packet.yiaddr != ZERO_IP else ""
    bootfile = packet.option(OptionCode.BOOTFILE_NAME)
    file = bootfile.decode(errors="replace") if bootfile is not None else ""
    mac = packet.mac
    timeline.record(Event(now, "dhcp", mac=mac, ip=ip, message_type=kind, address=ip, file=file))
    if kind == MessageType.ACK.name and ip:
        timeline.bind(ip, mac)


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


def open_dhcp_socket(interface: str, port: int) -> socket.socket:
    """A UDP socket on 0.0.0.0:`port` that sends and receives broadcasts on `interface` only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        deepen_receive_buffer(sock)  # a rack powering on at once: queue, don't drop
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


def make_pools(
    contexts: Sequence[tuple[str | None, DhcpContext]],
    stored: Sequence[Lease] = (),
    spread: float = 0.0,
) -> list[Pool]:
    """A lease table per (interface or None behind relays, subnet), each filled with the stored
    leases in its subnet; each table's search for free addresses starts `spread` (0 to 1) of the
    way into its pool."""
    pools = []
    for interface, ctx in contexts:
        size = int(ctx.pool_end) - int(ctx.pool_start) + 1
        table = LeaseTable(
            ctx.pool_start,
            ctx.pool_end,
            server_ip=ctx.server_ip,
            offer_hold=ctx.offer_hold,
            leases=[lease for lease in stored if lease.ip in ctx.network],
            first=int(size * spread),
        )
        pools.append(Pool(ctx, table, interface))
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
    spread: float = 0.0,
    observer: Observer | None = None,
) -> DhcpServer:
    """Serve DHCP on `interface` (subnet `ctx`) and on `more_interfaces` (each with its subnet);
    `relayed` are the subnets behind relays. One socket per interface and port.

    Leases come from `leases` (local subnet only), else from `store` (persisted), else memory;
    every change goes to `store`, which the caller opened and closes after this server.
    In proxy mode a second socket per interface serves `pxe_port` (4011 by default).
    """
    local = [(interface, ctx), *more_interfaces]
    stored = await store.load_leases() if store is not None else []
    pools = make_pools([*local, *((None, r) for r in relayed)], stored, spread)
    if leases is not None:
        pools[0] = Pool(ctx, leases, interface)
    server = DhcpServer(DhcpCore(pools, CachedHosts(hosts)), store, clock, timeline, observer)
    ports = [port]
    if ctx.mode is DhcpMode.PROXY:
        ports.append(PXE_PORT if pxe_port is None else pxe_port)
    try:
        for name, _ in local:
            for index, number in enumerate(ports):
                sock = open_dhcp_socket(name, number)
                logical = PXE_PORT if index == 1 else number
                server.add_endpoint(_Endpoint(server, sock, logical, name))
    except BaseException:
        server.close()
        raise
    for name, sub in local:
        bound = [str(e.bound_port) for e in server.endpoints if e.interface == name]
        log.info(
            "DHCP (%s) on %s port %s: server %s, pool %s-%s",
            ctx.mode.value,
            name,
            "+".join(bound),
            sub.server_ip,
            sub.pool_start,
            sub.pool_end,
        )
    for r in relayed:
        log.info("DHCP for relayed subnet %s: pool %s-%s", r.network, r.pool_start, r.pool_end)
    return server

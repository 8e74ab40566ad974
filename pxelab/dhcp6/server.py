"""The DHCPv6 transport: a UDP socket on [::]:547 bound to one interface (joined to ff02::1:2),
bytes in -> `Dhcp6Core.handle` -> bytes out. Decisions live in the core; this module logs, records
the timeline, stores lease changes (when given a store) before the reply that depends on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path
from typing import Protocol

from pxelab.dhcp.leases import refusal
from pxelab.dhcp6.context import Dhcp6Context, Dhcp6Reply, Host6Info, Host6Lookup, NoReply6, Sender6
from pxelab.dhcp6.core import Dhcp6Core, Pool6
from pxelab.dhcp6.leases import Lease6, Lease6Table
from pxelab.dhcp6.options import parse_ia_na
from pxelab.dhcp6.packet import (
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
    Dhcp6Message,
    Message,
    OptionCode,
    RelayMessage,
    build,
    parse,
)
from pxelab.errors import ConfigError, MalformedPacket
from pxelab.events import Event, Timeline

log = logging.getLogger("pxelab.dhcp6")

IF_INET6 = Path("/proc/net/if_inet6")
RESERVED_TTL = 0.5
"""Seconds the inventory's reserved-address map is reused."""


class Lease6Store(Protocol):
    """Where DHCPv6 leases outlive the process."""

    async def load_leases6(self) -> list[Lease6]:
        """Every stored IPv6 lease."""
        ...

    async def commit_leases6(self, changes: Sequence[Lease6], now: float) -> list[Lease6]:
        """Apply the changes, each atomically; the leases that refused some of them (granted by
        another instance sharing the store): another client's on the address, or a binding of
        the same IA decided later (`supersedes`)."""
        ...


def interface_ipv6(interface: str, prefix: IPv6Network, table: Path = IF_INET6) -> IPv6Interface:
    """The interface's address inside `prefix` (from /proc/net/if_inet6); ConfigError if none."""
    try:
        lines = table.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the IPv6 addresses ({table}): {exc.strerror}") from None
    for line in lines:
        fields = line.split()
        if len(fields) == 6 and fields[5] == interface:
            address = IPv6Address(bytes.fromhex(fields[0]))
            if address in prefix:
                return IPv6Interface(f"{address}/{int(fields[2], 16)}")
    raise ConfigError(
        f"key 'ipv6_prefix': interface {interface!r} has no address in {prefix} "
        f"(add one, e.g. ip -6 addr add {prefix[1]}/{prefix.prefixlen} dev {interface})"
    )


class CachedHosts6:
    """The inventory with `reserved6()` rebuilt at most every RESERVED_TTL seconds."""

    def __init__(self, hosts: Host6Lookup, clock: Callable[[], float] = time.monotonic) -> None:
        self.hosts = hosts
        self.clock = clock
        self._reserved: Mapping[IPv6Address, str] = {}
        self._until = float("-inf")

    def lookup(self, mac: str) -> Host6Info | None:
        """The host with this MAC, straight from the inventory."""
        return self.hosts.lookup(mac)

    def reserved6(self) -> Mapping[IPv6Address, str]:
        """Every reserved IPv6 address and its MAC, at most RESERVED_TTL seconds old."""
        now = self.clock()
        if now >= self._until:
            self._reserved = self.hosts.reserved6()
            self._until = now + RESERVED_TTL
        return self._reserved


@dataclass(frozen=True)
class _Pending:
    """A decision waiting for its lease changes to be stored."""

    outcome: Dhcp6Reply | NoReply6
    """What the core decided."""
    head: str
    """The log line's start (message type, client)."""
    now: float
    """When it was decided."""


class Dhcp6Server:
    """A running DHCPv6 listener on one interface; `close()` stops it."""

    def __init__(
        self,
        core: Dhcp6Core,
        sock: socket.socket,
        interface: str,
        store: Lease6Store | None,
        clock: Callable[[], float],
        timeline: Timeline | None,
    ) -> None:
        self.core, self.sock, self.interface = core, sock, interface
        self.index = socket.if_nametoindex(interface)
        self.store, self.clock, self.timeline = store, clock, timeline
        self.port: int = sock.getsockname()[1]
        self.errors = 0
        """Messages the core or the store failed on."""
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._worker = loop.create_task(self._commit_loop()) if store is not None else None
        loop.add_reader(sock.fileno(), self._readable)

    @property
    def pools(self) -> Sequence[Pool6]:
        """Every served link."""
        return self.core.pools

    def learn(self, stored: Sequence[Lease6]) -> int:
        """Take in what the shared store holds that the tables do not know (leases granted by
        other instances); returns how many leases were news."""
        now, news = self.clock(), 0
        for lease in stored:
            for pool in self.core.pools:
                if lease.ip in pool.ctx.prefix and pool.leases.differs(lease, now):
                    pool.leases.learn(lease)
                    news += 1
        return news

    def close(self) -> None:
        """Stop receiving; safe to call more than once."""
        if not self._closed.done():
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self._closed.set_result(None)
            if self._worker is not None:
                self._worker.cancel()

    async def wait_closed(self) -> None:
        """Return once the socket is closed and no commit is under way."""
        await asyncio.shield(self._closed)
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)

    def _readable(self) -> None:
        for _ in range(64):
            try:
                data, addr = self.sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("DHCPv6 socket error: %s", exc)
                return
            self.datagram_received(data, addr[0], addr[1])

    def datagram_received(self, data: bytes, address: str, port: int) -> None:
        """Decide on one datagram; send the reply now, or after its lease changes are stored."""
        address = address.partition("%")[0]
        try:
            message = parse(data)
        except MalformedPacket as exc:
            log.warning("malformed DHCPv6 datagram from [%s]:%s: %s", address, port, exc)
            return
        now = self.clock()
        try:
            outcome = self.core.handle(message, Sender6(address, port, self.interface), now)
        except Exception as exc:  # a bug in the core: keep serving, say it
            self._failed(exc, f"deciding on a message from [{address}]:{port}", now)
            return
        head = f"{_describe(message)} from [{address}]"
        if isinstance(outcome, Dhcp6Reply):
            head = f"{_describe(message)} from {outcome.client} ([{address}])"
        item = _Pending(outcome, head, now)
        if self.store is None or (not outcome.changes and self._queue.empty()):
            self._send(item)
        else:
            self._queue.put_nowait(item)

    async def _commit_loop(self) -> None:
        while True:
            item = await self._queue.get()
            if item.outcome.changes and self.store is not None:
                try:
                    refused = await self.store.commit_leases6(item.outcome.changes, self.clock())
                except Exception as exc:  # not stored: send nothing that depends on it
                    what = f"storing {len(item.outcome.changes)} lease change(s)"
                    self._failed(exc, what, self.clock())
                    continue
                if refused:  # another instance decided otherwise: learn that, the client asks again
                    for held in dict.fromkeys(refused):
                        log.info(
                            "%s is held by %s in the lease store; learned", held.ip, held.client
                        )
                        self.core.learn(held)
                    why = refusal(item.outcome.changes, refused) or "refused by the lease store"
                    log.info("%s: reply dropped: %s", item.head, why)
                    continue
            self._send(item)

    def _failed(self, exc: Exception, what: str, now: float) -> None:
        """Count an internal error, log it, and record an `error` event (/metrics: dhcp6)."""
        self.errors += 1
        log.error("DHCPv6: %s failed", what, exc_info=exc)
        if self.timeline is not None:
            error = f"DHCPv6: {what} failed: {type(exc).__name__}"
            self.timeline.record(Event(now, "error", error=error, service="dhcp6"))

    def _send(self, item: _Pending) -> None:
        outcome = item.outcome
        if isinstance(outcome, NoReply6):
            log.info("%s: no reply: %s", item.head, outcome.reason)
            return
        address, port = outcome.destination
        target = IPv6Address(address)
        scope = self.index if target.is_link_local or target.is_multicast else 0
        summary = _summary(outcome)
        log.info("%s: %s to [%s]:%s", item.head, summary, address, port)
        if self.timeline is not None:
            _record(self.timeline, item.now, outcome)
        try:
            self.sock.sendto(build(outcome.message), (address, port, 0, scope))
        except OSError as exc:
            log.warning("cannot send a DHCPv6 reply to [%s]:%s: %s", address, port, exc)


def _inner(message: Message) -> Dhcp6Message | None:
    current: Message = message
    while isinstance(current, RelayMessage):
        inner = current.option(OptionCode.RELAY_MSG)
        if inner is None:
            return None
        try:
            current = parse(inner)
        except MalformedPacket:
            return None
    return current


def _describe(message: Message) -> str:
    inner = _inner(message)
    kind = inner.msg_type.name if inner is not None else message.msg_type.name
    return f"{kind} (relayed)" if isinstance(message, RelayMessage) else kind


def _granted(message: Dhcp6Message) -> list[str]:
    """The addresses with a non-zero lifetime a reply gives."""
    out = []
    for code, value in message.options:
        if code == OptionCode.IA_NA:
            with contextlib.suppress(MalformedPacket):
                out += [str(a.address) for a in parse_ia_na(value).addresses() if a.valid]
    return out


def _summary(reply: Dhcp6Reply) -> str:
    inner = _inner(reply.message)
    if inner is None:
        return "?"
    parts = [inner.msg_type.name, *_granted(inner)]
    url = inner.option(OptionCode.BOOTFILE_URL)
    if url is not None:
        parts.append(f"url={url.decode(errors='replace')}")
    if reply.note:
        parts.append(f"[{reply.note}]")
    return " ".join(parts)


def _record(timeline: Timeline, now: float, reply: Dhcp6Reply) -> None:
    """One timeline event per ADVERTISE/REPLY; a REPLY binds each address to the client's MAC."""
    inner = _inner(reply.message)
    if inner is None:
        return
    mac = reply.client if not reply.client.startswith("duid:") else ""
    url = inner.option(OptionCode.BOOTFILE_URL)
    granted = _granted(inner)
    ip = granted[0] if granted else ""
    file = url.decode(errors="replace") if url is not None else ""
    kind = inner.msg_type.name
    timeline.record(Event(now, "dhcp", mac=mac, ip=ip, message_type=kind, address=ip, file=file))
    if kind == "REPLY" and mac:
        for address in granted:
            timeline.bind(address, mac)


def open_dhcp6_socket(interface: str, port: int) -> socket.socket:
    """A UDP socket on [::]:`port`, bound to `interface` and joined to ff02::1:2 on it."""
    index = socket.if_nametoindex(interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        group = socket.inet_pton(socket.AF_INET6, ALL_DHCP_RELAY_AGENTS_AND_SERVERS)
        sock.setsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", index)
        )
        try:
            sock.bind(("::", port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind DHCPv6 to [::]:{port}: {exc.strerror}") from exc
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def start_dhcp6(
    ctx: Dhcp6Context,
    hosts: Host6Lookup,
    interface: str,
    *,
    port: int = 547,
    store: Lease6Store | None = None,
    clock: Callable[[], float] = time.time,
    timeline: Timeline | None = None,
    relayed: Sequence[Dhcp6Context] = (),
    spread: float = 0.0,
) -> Dhcp6Server:
    """Serve DHCPv6 on `interface` for link `ctx` (and the `relayed` links behind relays); each
    pool's search for free addresses starts `spread` (0 to 1) of the way into it."""
    stored = await store.load_leases6() if store is not None else []
    pools = []
    for name, link in [(interface, ctx), *((None, r) for r in relayed)]:
        mine = [lease for lease in stored if lease.ip in link.prefix]
        size = int(link.pool_end) - int(link.pool_start) + 1
        table = Lease6Table(
            link.pool_start,
            link.pool_end,
            offer_hold=link.offer_hold,
            leases=mine,
            first=int(size * spread),
        )
        pools.append(Pool6(link, table, name))
    sock = open_dhcp6_socket(interface, port)
    server = Dhcp6Server(
        Dhcp6Core(pools, CachedHosts6(hosts)), sock, interface, store, clock, timeline
    )
    log.info(
        "DHCPv6 on %s port %s: server %s, pool %s-%s",
        interface,
        server.port,
        ctx.server_ip,
        ctx.pool_start,
        ctx.pool_end,
    )
    return server

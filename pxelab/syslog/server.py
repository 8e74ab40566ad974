"""The syslog adapter: one UDP socket, datagrams -> `SyslogCore` -> `log` events on the timeline.

A port it cannot bind (514 needs root) turns the receiver off with one warning line: installer
logs are a convenience, never a reason not to serve boots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address

from pxelab.events import Timeline
from pxelab.syslog.receiver import Limits, SyslogCore

log = logging.getLogger("pxelab.syslog")

RESERVED_TTL = 0.5
"""Seconds the inventory's reserved-address map is reused."""
REPORT_EVERY = 60.0
"""Seconds between log lines that count dropped datagrams (only when some were dropped)."""


class Owners:
    """Address -> MAC: what DHCP leased (the timeline's map), else what a host file reserves."""

    def __init__(
        self,
        timeline: Timeline,
        reserved: Callable[[], Mapping[IPv4Address, str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeline, self.reserved, self.clock = timeline, reserved, clock
        self._by_ip: dict[str, str] = {}
        self._until = float("-inf")

    def __call__(self, ip: str) -> str:
        mac = self.timeline.mac_at(ip)
        if mac:
            return mac
        now = self.clock()
        if now >= self._until:
            self._by_ip = {str(k): v for k, v in self.reserved().items()}
            self._until = now + RESERVED_TTL
        return self._by_ip.get(ip, "")


class SyslogServer(asyncio.DatagramProtocol):
    """The receiver on one UDP socket; `close()` stops it."""

    def __init__(
        self, core: SyslogCore, timeline: Timeline, on_drop: Callable[[str], None] | None = None
    ) -> None:
        self.core, self.timeline, self.on_drop = core, timeline, on_drop
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reported = dict(core.dropped)
        self._next_report = time.monotonic() + REPORT_EVERY

    @property
    def port(self) -> int:
        if self.transport is None:
            return 0
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.DatagramTransport):
            self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        outcome = self.core.handle(data, str(addr[0]), time.time())
        if isinstance(outcome, str):
            log.debug("syslog datagram from %s dropped: %s", addr[0], outcome)
            if self.on_drop is not None:
                self.on_drop(outcome)
            if time.monotonic() >= self._next_report:
                self.report()
        else:
            self.timeline.record(outcome)

    def report(self) -> None:
        """Log how many datagrams were dropped since the last report, by reason."""
        self._next_report = time.monotonic() + REPORT_EVERY
        news = {k: v - self._reported.get(k, 0) for k, v in self.core.dropped.items()}
        self._reported = dict(self.core.dropped)
        if any(news.values()):
            parts = ", ".join(f"{n} {reason}" for reason, n in news.items() if n)
            log.warning("syslog: dropped %s", parts)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        elif not self.closed.done():
            self.closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed)


async def start_syslog(
    host: str,
    port: int,
    timeline: Timeline,
    reserved: Callable[[], Mapping[IPv4Address, str]],
    limits: Limits | None = None,
    on_drop: Callable[[str], None] | None = None,
) -> SyslogServer | None:
    """The receiver on host:port, or None (with one warning line) when the port cannot be bound."""
    loop = asyncio.get_running_loop()
    core = SyslogCore(Owners(timeline, reserved), limits)
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: SyslogServer(core, timeline, on_drop), local_addr=(host, port)
        )
    except OSError as exc:
        log.warning(
            "syslog receiver off: cannot bind UDP %s:%d: %s (port 514 needs root; "
            "set syslog_port = 0 to turn it off, or pick a port above 1023)",
            host,
            port,
            exc.strerror or exc,
        )
        return None
    protocol.transport = transport  # connection_made runs only at the next loop turn
    log.info("syslog receiver on UDP %s:%d", host, protocol.port)
    return protocol

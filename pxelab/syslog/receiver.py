"""What becomes of one syslog datagram: dropped (and why), or a `log` event for the host that
owns the sender's address. Limits: size, a rate per source, known senders only. Pure: `now` is
passed in, the owner of an address is asked of a function.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pxelab.events import Event
from pxelab.syslog.message import MalformedSyslog, parse

DROPS = ("oversized", "malformed", "rate-limited", "unknown-source")
"""Why a datagram was dropped, as the counters name it."""
MAX_SOURCES = 4096
"""Source addresses whose rate is tracked; the least recently heard is forgotten first."""


@dataclass(frozen=True)
class Limits:
    """What one receiver takes."""

    max_size: int = 2048
    """Largest datagram in bytes (RFC 5424 §6.1: receivers should take 2048)."""
    rate: float = 100.0
    """Messages per second one source may send, on average."""
    burst: int = 500
    """Messages one source may send at once (an installer logs in bursts)."""


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class SyslogCore:
    """Decides per datagram; counts what it accepts and what it drops, by reason."""

    def __init__(self, owner: Callable[[str], str], limits: Limits | None = None) -> None:
        self.owner = owner
        """Address -> the MAC of the host that leased or reserves it, or ""."""
        self.limits = limits or Limits()
        self.accepted = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROPS, 0)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def handle(self, data: bytes, source: str, now: float) -> Event | str:
        """The `log` event for this datagram, or the reason it is dropped (one of DROPS)."""
        reason = self._check(data, source, now)
        if isinstance(reason, str):
            self.dropped[reason] += 1
        else:
            self.accepted += 1
        return reason

    def _check(self, data: bytes, source: str, now: float) -> Event | str:
        if len(data) > self.limits.max_size:
            return "oversized"
        if not self._take(source, now):
            return "rate-limited"
        try:
            message = parse(data)
        except MalformedSyslog:
            return "malformed"
        mac = self.owner(source)
        if not mac:
            return "unknown-source"
        return Event(
            now,
            "log",
            mac=mac,
            ip=source,
            severity=message.severity,
            facility=message.facility,
            app=message.app,
            text=message.text,
        )

    def _take(self, source: str, now: float) -> bool:
        """Token bucket per source: `rate` per second, up to `burst`."""
        bucket = self._buckets.pop(source, None)
        if bucket is None:
            bucket = _Bucket(float(self.limits.burst), now)
        else:
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(
                float(self.limits.burst), bucket.tokens + elapsed * self.limits.rate
            )
            bucket.stamp = now
        self._buckets[source] = bucket
        while len(self._buckets) > MAX_SOURCES:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

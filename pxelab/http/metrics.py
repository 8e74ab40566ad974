"""Prometheus metrics at /metrics: HTTP requests and bytes, and counts taken from the timeline.

DHCP and TFTP need no hook of their own: every event they record in the boot timeline is
counted here from its fields (replies by type, transfers by result and their bytes, errors).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from pxelab.dhcp.packet import MessageType
from pxelab.events import Event

_DHCP_TYPES = frozenset(t.name for t in MessageType)
"""The label values of `pxelab_dhcp_replies_total{type}`: the counter stays bounded."""
_ERROR_SERVICES = frozenset({"dhcp", "dhcp6"})
"""Services whose `error` events count under their own `pxelab_errors_total{service}` label;
an error event naming none (or another) counts as `event`, so the label stays bounded."""


class Metrics:
    """The counters of one daemon, in their own registry (so tests can run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http = HttpCounts()
        """HTTP requests and body bytes: plain ints per response, rendered at scrape."""
        r.register(self.http)
        self.events = Counter(
            "pxelab_boot_events", "Boot timeline events recorded", ["stage"], registry=r
        )
        self.dhcp_replies = Counter(
            "pxelab_dhcp_replies", "DHCP replies sent, by message type", ["type"], registry=r
        )
        self.tftp_transfers = Counter(
            "pxelab_tftp_transfers", "TFTP read requests, by result", ["result"], registry=r
        )
        self.tftp_bytes = Counter(
            "pxelab_tftp_sent_bytes", "TFTP bytes of completed transfers", registry=r
        )
        self.errors = Counter(
            "pxelab_errors", "Errors: HTTP 5xx, failed TFTP transfers, error events", ["service"],
            registry=r,
        )  # fmt: skip
        self.syslog_dropped = Counter(
            "pxelab_syslog_dropped", "Syslog datagrams dropped, by reason", ["reason"], registry=r
        )
        self.installs = Counter(
            "pxelab_installs_completed", "Hosts that reported their install done", registry=r
        )
        self._stages: dict[str, Any] = {}
        """Stage -> its event counter (stages are a fixed set)."""

    def on_event(self, event: Event) -> None:
        """Timeline listener: count the event by stage, and DHCP/TFTP ones by their fields."""
        stage = self._stages.get(event.stage)
        if stage is None:
            stage = self._stages[event.stage] = self.events.labels(event.stage)
        stage.inc()
        if event.stage == "dhcp":
            if event.message_type in _DHCP_TYPES:
                self.dhcp_replies.labels(event.message_type).inc()
        elif event.stage == "tftp":
            if event.outcome is None:
                return
            result = event.outcome.result
            self.tftp_transfers.labels(result).inc()
            if result == "completed":
                self.tftp_bytes.inc(event.bytes_acked or 0)
            elif result == "failed":
                self.errors.labels("tftp").inc()
        elif event.stage == "installed":
            self.installs.inc()
        elif event.stage == "error":
            service = event.service if event.service in _ERROR_SERVICES else "event"
            self.errors.labels(service).inc()

    def on_response(self, route: str, status: int, sent: int) -> None:
        """Count one HTTP response (sent = body bytes; 0 for HEAD)."""
        self.http.count(route, status, sent)
        if status >= 500:
            self.errors.labels("http").inc()

    def text(self) -> bytes:
        """Everything in the Prometheus text format."""
        return generate_latest(self.registry)


class HttpCounts(Collector):
    """`pxelab_http_requests_total{route,status}` and `pxelab_http_sent_bytes_total{route}` as
    plain ints (both labels bounded); a Counter's lock and label lookup cost every response."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], list[float]] = {}
        """(route, status) -> [count, created]."""
        self.sent: dict[str, list[float]] = {}
        """route -> [body bytes, created]."""

    def count(self, route: str, status: int, sent: int) -> None:
        """One response of route with status and sent body bytes."""
        requests = self.requests.get((route, status))
        if requests is None:
            requests = self.requests[(route, status)] = [0, time.time()]
        requests[0] += 1
        total = self.sent.get(route)
        if total is None:
            total = self.sent[route] = [0, time.time()]
        total[0] += sent

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "pxelab_http_requests", "HTTP requests answered", labels=["route", "status"]
        )
        for (route, status), (count, created) in list(self.requests.items()):
            requests.add_metric([route, str(status)], count, created=created)
        sent = CounterMetricFamily(
            "pxelab_http_sent_bytes", "HTTP response body bytes", labels=["route"]
        )
        for route, (total, created) in list(self.sent.items()):
            sent.add_metric([route], total, created=created)
        yield requests
        yield sent


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
"""The app's counters: its timeline listener and `on_response_prepare` feed them."""


def route_name(request: web.Request) -> str:
    """The route pattern a request matched (`/images/{path}`), or `unmatched`: bounded labels."""
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


async def metrics_page(request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text format."""
    return web.Response(
        body=request.app[METRICS].text(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )

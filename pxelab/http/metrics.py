"""Prometheus metrics at /metrics: HTTP requests and bytes, and counts taken from the timeline.

DHCP and TFTP need no hook of their own: every event they record in the boot timeline is
counted here from its fields (replies by type, transfers by result and their bytes, errors).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

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
        self.http_requests = Counter(
            "pxelab_http_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.http_bytes = Counter(
            "pxelab_http_sent_bytes", "HTTP response body bytes", ["route"], registry=r
        )
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
        self._http: dict[tuple[str, int], tuple[Any, Any]] = {}
        """(route, status) -> its request and byte counters: `labels()` once per pair, not once
        per response (both labels are bounded)."""
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
        counters = self._http.get((route, status))
        if counters is None:
            counters = self._http[(route, status)] = (
                self.http_requests.labels(route, str(status)),
                self.http_bytes.labels(route),
            )
        counters[0].inc()
        counters[1].inc(sent)
        if status >= 500:
            self.errors.labels("http").inc()

    def text(self) -> bytes:
        """Everything in the Prometheus text format."""
        return generate_latest(self.registry)


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

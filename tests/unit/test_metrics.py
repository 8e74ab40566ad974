"""`pxelab_errors_total{service}`: error events count under the service that recorded them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pxelab.events import Event
from pxelab.http.metrics import Metrics


def error_counts(metrics: Metrics) -> dict[str, float]:
    """Non-zero `pxelab_errors_total` samples by service, parsed from the /metrics text."""
    return {
        sample.labels["service"]: sample.value
        for family in text_string_to_metric_families(metrics.text().decode())
        for sample in family.samples
        if sample.name == "pxelab_errors_total" and sample.value
    }


def test_error_events_count_under_their_service_and_the_label_stays_bounded() -> None:
    metrics = Metrics()
    for service in ("dhcp", "dhcp", "dhcp6", "", "a-label-nobody-defined"):
        metrics.on_event(Event(1.0, "error", error="DHCP: x failed", service=service))
    metrics.on_response("/boot", 500, 0)
    assert error_counts(metrics) == {"dhcp": 2.0, "dhcp6": 1.0, "event": 2.0, "http": 1.0}


def test_the_service_of_an_error_event_survives_its_json_form() -> None:
    event = Event(1.0, "error", mac="52:54:00:00:00:01", error="DHCP: x failed", service="dhcp")
    data = event.to_json()
    assert data["service"] == "dhcp"
    assert Event.from_json(data) == event
    assert "service" not in Event(1.0, "error", error="x").to_json()

"""The boot timeline: per-MAC events, IP->MAC mapping, bounds, listeners; event text and JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxelab.events import Event, TftpOutcome, Timeline

MAC = "52:54:00:00:00:01"


def test_events_by_mac_and_tftp_by_ip() -> None:
    tl = Timeline()
    tl.record(Event(1.0, "dhcp", mac=MAC, ip="10.0.0.5", message_type="ACK", address="10.0.0.5"))
    tl.record(Event(2.0, "tftp", ip="10.0.0.5", file="ipxe.efi"))  # TFTP knows only the IP
    tl.record(Event(3.0, "tftp", ip="10.0.0.9", file="ipxe.efi"))  # nobody known at that IP
    assert [e.stage for e in tl.events(MAC)] == ["dhcp", "tftp"]
    assert tl.last(MAC) == Event(2.0, "tftp", mac=MAC, ip="10.0.0.5", file="ipxe.efi")
    assert tl.macs() == [MAC]


def test_record_returns_the_event_as_stored() -> None:
    tl = Timeline()
    tl.bind("10.0.0.5", MAC)
    stored = tl.record(Event(1.0, "kernel", ip="10.0.0.5", path="/images/vmlinuz"))
    assert stored.mac == MAC and tl.events(MAC) == [stored]


def test_bounds_and_listeners() -> None:
    tl = Timeline(per_host=3, max_hosts=2)
    seen: list[Event] = []
    unsubscribe = tl.subscribe(seen.append)
    for i in range(5):
        tl.record(Event(float(i), "error", mac="aa", error=str(i)))
    assert [e.detail for e in tl.events("aa")] == ["2", "3", "4"]
    tl.record(Event(9.0, "error", mac="bb", error="x"))
    tl.record(Event(9.5, "error", mac="cc", error="y"))  # "aa" is the least recently active: gone
    assert tl.macs() == ["bb", "cc"]
    assert len(seen) == 7
    unsubscribe()
    tl.record(Event(10.0, "error", mac="bb", error="z"))
    assert len(seen) == 7


T = 0.0


def tftp(outcome: TftpOutcome, **fields: Any) -> Event:
    """A TFTP event for ipxe.efi, as the TFTP server records it."""
    return Event(T, "tftp", ip="10.0.0.5", file="ipxe.efi", outcome=outcome, **fields)


# Every kind of event the services record, and the text the page and the API show for it.
DETAILS: list[tuple[Event, str]] = [
    (
        Event(T, "dhcp", message_type="OFFER", address="10.0.0.5", file="ipxe.efi"),
        "OFFER 10.0.0.5 ipxe.efi",
    ),
    (Event(T, "dhcp", message_type="ACK", address="10.0.0.5"), "ACK 10.0.0.5"),
    (Event(T, "dhcp", message_type="NAK"), "NAK"),
    (Event(T, "dhcp", message_type="ACK", file="grubx64.efi"), "ACK grubx64.efi"),
    (
        tftp(TftpOutcome.COMPLETED, bytes_acked=1024, size=1024, blksize=1468, windowsize=4),
        "ipxe.efi: sent 1024 bytes",
    ),
    (
        tftp(
            TftpOutcome.SIZE_PROBE, bytes_acked=0, size=9, tsize=9, error_code=8, error="size only"
        ),
        "ipxe.efi: aborted after OACK (tsize 9), client error 8 (size only)",
    ),
    (
        tftp(TftpOutcome.SIZE_PROBE, error_code=0, error="bye"),
        "ipxe.efi: aborted after OACK, client error 0 (bye)",
    ),
    (
        tftp(TftpOutcome.CLIENT_ERROR, bytes_acked=512, error_code=0, error="disk full"),
        "ipxe.efi: client error 0 (disk full) after 512 bytes",
    ),
    (
        tftp(TftpOutcome.TIMED_OUT, bytes_acked=0, size=9),
        "ipxe.efi: timed out, 0 of 9 bytes acknowledged",
    ),
    (
        tftp(TftpOutcome.IDLE, bytes_acked=512, size=300000),
        "ipxe.efi: reaped, idle with 512 of 300000 bytes acknowledged",
    ),
    (
        tftp(TftpOutcome.STOPPED, bytes_acked=0, size=9, reason="server closing"),
        "ipxe.efi: stopped, server closing (0 of 9 bytes)",
    ),
    (
        tftp(TftpOutcome.ERROR, error_code=1, error="file not found"),
        "ipxe.efi: error 1 (file not found)",
    ),
    (
        tftp(TftpOutcome.ERROR, error_code=2, error="access violation", reason="permission denied"),
        "ipxe.efi: error 2 (access violation): permission denied",
    ),
    (
        tftp(TftpOutcome.REFUSED, error_code=2, error="access violation", reason="symlink loop"),
        "ipxe.efi: refused, error 2 (access violation): symlink loop",
    ),
    (
        tftp(TftpOutcome.UPLOAD_REFUSED, error_code=2, error="read-only server"),
        "ipxe.efi: upload refused (read-only server)",
    ),
    (Event(T, "ipxe", path="/boot.ipxe"), "chain script /boot.ipxe"),
    (Event(T, "script", mac=MAC, path="/boot", template="ubuntu"), "boot script /boot (ubuntu)"),
    (
        Event(T, "local-boot", path="/boot", state="installed"),
        "local-boot script /boot (installed)",
    ),
    (Event(T, "kernel", path="/images/demo/amd64/vmlinuz"), "/images/demo/amd64/vmlinuz"),
    (Event(T, "http-boot", path="/tftp/ipxe.efi"), "/tftp/ipxe.efi"),
    (
        Event(T, "install-data", file="user-data", path="/cloud-init/web-1/user-data"),
        "user-data /cloud-init/web-1/user-data",
    ),
    (
        Event(T, "installed", state="installed", method="POST", path=f"/api/hosts/{MAC}/installed"),
        f"state installed (POST /api/hosts/{MAC}/installed)",
    ),
    (Event(T, "error", error="<script>alert(1)</script>"), "<script>alert(1)</script>"),
]


@pytest.mark.parametrize(("event", "detail"), DETAILS)
def test_detail_is_rendered_from_the_fields(event: Event, detail: str) -> None:
    assert event.detail == detail
    assert event.to_json()["detail"] == detail
    assert Event.from_json(json.loads(json.dumps(event.to_json()))) == event


def test_json_shape() -> None:
    event = Event(
        1.5,
        "tftp",
        mac=MAC,
        ip="10.0.0.5",
        file="ipxe.efi",
        outcome=TftpOutcome.COMPLETED,
        bytes_acked=1024,
        size=1024,
        blksize=1468,
        windowsize=4,
    )
    assert event.to_json() == {
        "time": 1.5,
        "mac": MAC,
        "stage": "tftp",
        "detail": "ipxe.efi: sent 1024 bytes",
        "ip": "10.0.0.5",
        "file": "ipxe.efi",
        "outcome": "completed",
        "bytes_acked": 1024,
        "size": 1024,
        "blksize": 1468,
        "windowsize": 4,
    }
    bare = Event(2.0, "ipxe", path="/boot.ipxe").to_json()
    assert list(bare) == ["time", "mac", "stage", "detail", "ip", "path"]
    assert bare["mac"] == "" and bare["ip"] == ""


_text = st.text(max_size=20)
_number = st.none() | st.integers(min_value=0, max_value=2**63)
_events = st.builds(
    Event,
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
    mac=_text,
    ip=_text,
    message_type=_text,
    address=_text,
    file=_text,
    path=_text,
    method=_text,
    template=_text,
    state=_text,
    outcome=st.none() | st.sampled_from(TftpOutcome),
    bytes_acked=_number,
    size=_number,
    tsize=_number,
    blksize=_number,
    windowsize=_number,
    error_code=_number,
    error=_text,
    reason=_text,
)


@given(_events)
def test_json_round_trips_exactly(event: Event) -> None:
    data = json.loads(json.dumps(event.to_json()))
    again = Event.from_json(data)
    assert again == event
    assert type(again.outcome) is type(event.outcome) and type(again.time) is float


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"stage": "dhcp"}, "missing key 'time'"),
        ({"time": 1.0}, "missing key 'stage'"),
        ({"time": "1", "stage": "dhcp"}, "key 'time': expected a number"),
        ({"time": True, "stage": "dhcp"}, "key 'time': expected a number"),
        ({"time": 1.0, "stage": 3}, "key 'stage': expected a string"),
        ({"time": 1.0, "stage": "tftp", "bytes_acked": "9"}, "key 'bytes_acked': expected an integer"),
        ({"time": 1.0, "stage": "tftp", "size": 1.5}, "key 'size': expected an integer"),
        ({"time": 1.0, "stage": "tftp", "outcome": "done"}, "key 'outcome': 'done' is not one of"),
        ({"time": 1.0, "stage": "tftp", "colour": "red"}, "unknown key 'colour'"),
    ],
)  # fmt: skip
def test_from_json_names_what_is_wrong(data: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Event.from_json(data)


def test_an_integer_time_reads_as_a_float() -> None:
    event = Event.from_json({"time": 5, "stage": "dhcp", "detail": "ignored: it is rendered"})
    assert event == Event(5.0, "dhcp") and isinstance(event.time, float)


@pytest.mark.parametrize(
    ("outcome", "result"),
    [
        (TftpOutcome.COMPLETED, "completed"),
        (TftpOutcome.SIZE_PROBE, "size-probe"),
        (TftpOutcome.CLIENT_ERROR, "failed"),
        (TftpOutcome.TIMED_OUT, "failed"),
        (TftpOutcome.STOPPED, "failed"),
        (TftpOutcome.IDLE, "refused"),
        (TftpOutcome.ERROR, "refused"),
        (TftpOutcome.REFUSED, "refused"),
        (TftpOutcome.UPLOAD_REFUSED, "refused"),
    ],
)
def test_tftp_outcomes_count_under_a_metrics_result(outcome: TftpOutcome, result: str) -> None:
    assert outcome.result == result

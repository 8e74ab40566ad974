"""The boot timeline: per-MAC events, IP->MAC mapping, bounds, listeners."""

from __future__ import annotations

from pxelab.events import Event, Timeline


def test_events_by_mac_and_tftp_by_ip() -> None:
    tl = Timeline()
    tl.record(1.0, "dhcp", "ACK 10.0.0.5", mac="52:54:00:00:00:01", ip="10.0.0.5")
    tl.record(2.0, "tftp", "ipxe.efi", ip="10.0.0.5")  # TFTP knows only the IP
    tl.record(3.0, "tftp", "ipxe.efi", ip="10.0.0.9")  # nobody known at that IP
    assert [e.stage for e in tl.events("52:54:00:00:00:01")] == ["dhcp", "tftp"]
    assert tl.last("52:54:00:00:00:01") == Event(
        2.0, "52:54:00:00:00:01", "tftp", "ipxe.efi", "10.0.0.5"
    )
    assert tl.macs() == ["52:54:00:00:00:01"]


def test_bounds_and_listeners() -> None:
    tl = Timeline(per_host=3, max_hosts=2)
    seen: list[Event] = []
    unsubscribe = tl.subscribe(seen.append)
    for i in range(5):
        tl.record(float(i), "dhcp", str(i), mac="aa")
    assert [e.detail for e in tl.events("aa")] == ["2", "3", "4"]
    tl.record(9.0, "dhcp", "x", mac="bb")
    tl.record(9.5, "dhcp", "y", mac="cc")  # "aa" is the least recently active: forgotten
    assert tl.macs() == ["bb", "cc"]
    assert len(seen) == 7
    unsubscribe()
    tl.record(10.0, "dhcp", "z", mac="bb")
    assert len(seen) == 7

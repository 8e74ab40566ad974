"""Syslog: RFC 5424, RFC 3164 and busybox/d-i lines parsed; junk refused with a reason; the
receiver's limits; log lines kept apart on the timeline; option 7 and the installers' switches."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxelab.boot.render import Renderer
from pxelab.dhcp.context import DhcpContext
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode
from pxelab.dhcp.reply import answer
from pxelab.events import Event, Timeline
from pxelab.hosts.inventory import parse_host
from pxelab.syslog.message import MalformedSyslog, SyslogMessage, parse
from pxelab.syslog.receiver import Limits, SyslogCore
from pxelab.syslog.server import start_syslog


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"<11>1 2026-12-01T10:00:00.1Z vm1 anna 312 - - retrieving preseed failed",
            SyslogMessage(1, 3, "vm1", "anna", "retrieving preseed failed"),
        ),
        (
            b'<134>1 - - app - ID47 [exampleSDID@32473 iut="3" x="a\\]b"][b@1 c="d"] \xef\xbb\xbfhi',
            SyslogMessage(16, 6, "", "app", "hi"),
        ),
        (b"<13>1 - h - - -", SyslogMessage(1, 5, "h", "", "")),
        (
            b"<14>Dec  1 10:00:00 vm1 main-menu[312]: INFO: Menu item 'netcfg' selected\n",
            SyslogMessage(1, 6, "vm1", "main-menu", "INFO: Menu item 'netcfg' selected"),
        ),
        (  # busybox syslogd -R and the Debian installer: no HOSTNAME
            b"<30>Dec  1 10:00:00 net/hw-detect.hotplug: Detected hotpluggable network interface",
            SyslogMessage(
                3, 6, "", "net/hw-detect.hotplug", "Detected hotpluggable network interface"
            ),
        ),
        (b"no pri, just text", SyslogMessage(1, 5, "", "", "no pri, just text")),
        (b"<0>kernel: panic\tnow\x07", SyslogMessage(0, 0, "", "kernel", "panic now\ufffd")),
    ],
)
def test_parse(data: bytes, message: SyslogMessage) -> None:
    assert parse(data) == message


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty datagram"),
        (b"  \n", "empty datagram"),
        (b"<13>a\x00b", "binary data (NUL bytes)"),
        (b"<192>1 - - - - - -", "PRI 192 is above 191"),
        (b"<x>hello", "bad PRI"),
        (b"<13>\xff\xfe", "not UTF-8 at byte 0"),
        (b"<13>1 - - -", "RFC 5424 header has 3 of 6 fields"),
        (b"<13>1 - h a p m [unclosed", "STRUCTURED-DATA is not closed"),
        (b"<13>1 - h a p m junk", "STRUCTURED-DATA is neither"),
    ],
)
def test_junk_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedSyslog, match=re.escape(reason)):
        parse(data)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    try:
        message = parse(data)
    except MalformedSyslog:
        return
    assert all(c.isprintable() for c in message.text + message.app + message.hostname)


def core(owners: dict[str, str] | None = None, **limits: float) -> SyslogCore:
    known = owners if owners is not None else {"10.0.0.5": "52:54:00:00:00:05"}
    return SyslogCore(lambda ip: known.get(ip, ""), Limits(**limits))  # type: ignore[arg-type]


def test_a_known_sender_gets_a_log_event() -> None:
    event = core().handle(b"<11>anna: failed", "10.0.0.5", 7.0)
    assert event == Event(
        7.0, "log", mac="52:54:00:00:00:05", ip="10.0.0.5", severity=3, facility=1,
        app="anna", text="failed",
    )  # fmt: skip
    assert isinstance(event, Event) and event.detail == "[err] anna: failed"
    assert Event.from_json(event.to_json()) == event


def test_limits_count_what_they_drop() -> None:
    receiver = core(max_size=100, rate=1.0, burst=3)
    assert receiver.handle(b"<13>" + b"x" * 100, "10.0.0.5", 0.0) == "oversized"
    assert receiver.handle(b"<13>hi", "10.0.0.9", 0.0) == "unknown-source"
    assert receiver.handle(b"\x00", "10.0.0.5", 0.0) == "malformed"
    outcomes = [receiver.handle(b"<13>hi", "10.0.0.5", 0.0) for _ in range(3)]
    assert [isinstance(o, Event) for o in outcomes] == [True, True, False]
    assert outcomes[2] == "rate-limited"  # the burst of 3 went to the junk and two lines
    assert isinstance(receiver.handle(b"<13>hi", "10.0.0.5", 1.0), Event)  # one token a second
    assert receiver.dropped == {
        "oversized": 1,
        "malformed": 1,
        "rate-limited": 1,
        "unknown-source": 1,
    }
    assert receiver.accepted == 3


def test_log_lines_are_bounded_apart_from_boot_events() -> None:
    timeline = Timeline(per_host=5, log_per_host=3)
    mac = "52:54:00:00:00:05"
    timeline.record(Event(1.0, "dhcp", mac=mac, message_type="ACK"))
    for n in range(10):
        timeline.record(Event(2.0 + n, "log", mac=mac, text=f"line {n}"))
    timeline.record(Event(20.0, "script", mac=mac, path="/boot"))
    events = timeline.events(mac)
    assert [e.stage for e in events] == ["dhcp", "log", "log", "log", "script"]
    assert [e.text for e in events if e.stage == "log"] == ["line 7", "line 8", "line 9"]
    last = timeline.last(mac)
    assert last is not None and last.stage == "script"


def test_option_7_names_this_server_when_asked() -> None:
    ctx = DhcpContext(
        server_ip=IPv4Address("10.0.0.1"),
        network=IPv4Network("10.0.0.0/24"),
        pool_start=IPv4Address("10.0.0.100"),
        pool_end=IPv4Address("10.0.0.120"),
        log_server=True,
    )
    request = DhcpPacket(
        op=Op.BOOTREQUEST,
        xid=1,
        chaddr=bytes(6),
        options=((OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))),),
    )
    offer = answer(request, ctx, None, MessageType.OFFER, IPv4Address("10.0.0.100"))
    assert offer.packet.option(OptionCode.LOG_SERVERS) == bytes([10, 0, 0, 1])


@pytest.mark.parametrize(
    ("distro", "switch"),
    [("debian-12", "log_host=10.0.0.1 log_port=514"), ("fedora-41", "inst.syslog=10.0.0.1:514")],
)
def test_installers_are_told_where_to_log(distro: str, switch: str) -> None:
    host = parse_host({"name": "h", "mac": "52:54:00:00:00:05", "distro": distro}, "h.json")
    renderer = Renderer()
    from pxelab.hosts.install import InstallState

    assert switch.split("=")[0] + "=" not in renderer.boot_script(
        host, "http://10.0.0.1:8080", InstallState.INSTALL
    )
    renderer.syslog_port = 514
    assert switch in renderer.boot_script(host, "http://10.0.0.1:8080", InstallState.INSTALL)


async def test_a_port_that_cannot_be_bound_turns_the_receiver_off_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pxelab.syslog")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert await start_syslog("127.0.0.1", port, Timeline(), dict) is None
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"syslog receiver off: cannot bind UDP 127.0.0.1:{port}: ")
    assert "set syslog_port = 0" in line
    server = await start_syslog("127.0.0.1", 0, Timeline(), dict)
    assert server is not None and server.port > 0
    server.close()
    await asyncio.wait_for(server.wait_closed(), 2)


def test_ubuntu_autoinstall_reports_to_the_receiver() -> None:
    import yaml

    host = parse_host({"name": "u", "mac": "52:54:00:00:00:09", "distro": "ubuntu-24.04"}, "u")
    renderer = Renderer()
    plain = yaml.safe_load(renderer.install_data(host, "http://10.0.0.1:8080", "user-data"))
    assert "reporting" not in plain["autoinstall"]
    renderer.syslog_port = 5514
    data = yaml.safe_load(renderer.install_data(host, "http://10.0.0.1:8080", "user-data"))
    assert data["autoinstall"]["reporting"] == {
        "pxelab": {"type": "rsyslog", "destination": "@10.0.0.1:5514"}
    }

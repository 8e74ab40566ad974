"""`pxelab probe` formatting and the DISCOVERs it sends (pure parts)."""

from __future__ import annotations

import threading
import time
from ipaddress import IPv4Address
from typing import Any, ClassVar

import pytest

from pxelab.cli.probe import describe, discover, option_text, probes, run_probe
from pxelab.dhcp.packet import DhcpPacket, Op, OptionCode, build, parse


def test_probes_carry_options_93_60_97() -> None:
    pxe, ipxe, http = probes(7, bytes(range(16)), ipxe=True, http=True)
    sent = parse(discover(bytes.fromhex("525400000001"), 42, pxe))
    assert sent.xid == 42 and sent.broadcast and sent.mac == "52:54:00:00:00:01"
    assert sent.option(OptionCode.CLIENT_ARCH) == b"\x00\x07"
    assert sent.option(OptionCode.VENDOR_CLASS_ID) == b"PXEClient:Arch:00007:UNDI:003016"
    assert sent.option(OptionCode.CLIENT_UUID) == b"\0" + bytes(range(16))
    assert dict(ipxe.options)[OptionCode.USER_CLASS] == b"iPXE"
    assert dict(http.options)[OptionCode.VENDOR_CLASS_ID].startswith(b"HTTPClient:Arch:00016")
    assert probes(11, bytes(16), ipxe=False, http=True)[1].label == "HTTPClient (arch 19)"


def test_option_text() -> None:
    assert option_text(3, bytes([10, 0, 0, 1, 10, 0, 0, 2])) == "3 router=10.0.0.1,10.0.0.2"
    assert option_text(51, b"\x00\x00\x0e\x10") == "51 lease-time=3600 s"
    assert option_text(53, b"\x02") == "53 message-type=OFFER"
    assert option_text(60, b"PXEClient") == "60 vendor-class-id=PXEClient"
    assert option_text(43, b"\x06\x01\x08\xff") == "43 vendor-specific=060108ff"
    assert option_text(200, b"\x01") == "200 option=01"
    assert option_text(3, b"\x01") == "3 router=01"  # not an address list: hex


def test_describe_an_offer() -> None:
    offer = DhcpPacket(
        op=Op.BOOTREPLY,
        xid=1,
        yiaddr=IPv4Address("10.0.0.100"),
        siaddr=IPv4Address("10.0.0.1"),
        chaddr=bytes(6),
        file=b"ipxe.efi",
        options=((53, b"\x02"), (54, IPv4Address("10.0.0.1").packed)),
    )
    assert describe(offer, "10.0.0.1") == [
        "  offer from 10.0.0.1 (server id 10.0.0.1)",
        "    address      10.0.0.100",
        "    next server  10.0.0.1",
        "    file         ipxe.efi",
        "    option 53 message-type=OFFER",
        "    option 54 server-id=10.0.0.1",
    ]


class SlowSniffer:
    """Stands in for scapy's AsyncSniffer: its socket opens 0.3 s after start() (a busy machine),
    and it keeps only frames sent once it listens, as a real one would."""

    instances: ClassVar[list[SlowSniffer]] = []

    def __init__(self, *, lfilter: Any, started_callback: Any, **_: Any) -> None:
        self.lfilter, self.started_callback = lfilter, started_callback
        self.listening = threading.Event()
        self.results: list[Any] = []
        SlowSniffer.instances.append(self)

    def start(self) -> None:
        def open_late() -> None:
            time.sleep(0.3)
            self.listening.set()
            self.started_callback()

        threading.Thread(target=open_late, daemon=True).start()

    def stop(self) -> list[Any]:
        return self.results


def test_probe_sends_only_once_its_sniffer_listens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def sendp(frame: Any, iface: str) -> None:
        """A server that answers at once: its OFFER reaches the sniffer if it listens."""
        request = parse(bytes(frame[UDP].payload))
        offer = DhcpPacket(
            op=Op.BOOTREPLY,
            xid=request.xid,
            yiaddr=IPv4Address("10.0.0.100"),
            chaddr=request.chaddr,
            options=((OptionCode.MESSAGE_TYPE, b"\x02"),),
        )
        reply = Ether() / IP(src="10.0.0.1") / UDP(sport=67, dport=68) / Raw(build(offer))
        reply = Ether(bytes(reply))
        (sniffer,) = SlowSniffer.instances[-1:]
        if sniffer.listening.is_set() and sniffer.lfilter(reply):
            sniffer.results.append(reply)

    SlowSniffer.instances.clear()
    monkeypatch.setattr("scapy.sendrecv.AsyncSniffer", SlowSniffer)
    monkeypatch.setattr("scapy.sendrecv.sendp", sendp)
    found = probes(7, bytes(16), ipxe=False, http=False)
    assert run_probe("eth0", bytes.fromhex("525400000001"), found, 0.0) == 0
    out = capsys.readouterr().out
    assert "1 offer(s)" in out and "address      10.0.0.100" in out

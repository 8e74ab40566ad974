"""`pxelab probe --interface IF`: send PXE (and iPXE, HTTPClient) DHCPDISCOVERs and print every offer.

scapy sends the raw frames and sniffs the replies; our codec reads them. Formatting is pure.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import threading
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from pxelab.dhcp.arch import iana_name
from pxelab.dhcp.interface import interface_mac
from pxelab.dhcp.packet import (
    BROADCAST_FLAG,
    DhcpPacket,
    MessageType,
    Op,
    OptionCode,
    build,
    parse,
)
from pxelab.errors import ConfigError, MalformedPacket

ADDRESS_OPTIONS = {1, 3, 6, 28, 42, 44, 50, 54}
TEXT_OPTIONS = {12, 15, 17, 56, 60, 66, 67, 77}
SNIFFER_START = 30.0
"""Seconds the sniffer may take to open its socket before the first DISCOVER goes out."""


@dataclass(frozen=True)
class Probe:
    """One DISCOVER to send."""

    label: str
    """What it imitates, for the output."""
    options: tuple[tuple[int, bytes], ...]
    """Its options after option 53."""


def probes(arch: int, uuid: bytes, *, ipxe: bool, http: bool) -> list[Probe]:
    """The PXE DISCOVER, and optionally an iPXE-style and an HTTPClient-style one."""
    pxe = (
        (OptionCode.CLIENT_ARCH, struct.pack("!H", arch)),
        (OptionCode.VENDOR_CLASS_ID, f"PXEClient:Arch:{arch:05d}:UNDI:003016".encode()),
        (OptionCode.CLIENT_UUID, b"\0" + uuid),
    )
    out = [Probe(f"PXE ({iana_name(arch)}, arch {arch})", pxe)]
    if ipxe:
        out.append(Probe("iPXE", (*pxe, (OptionCode.USER_CLASS, b"iPXE"))))
    if http:
        http_arch = {0: 16, 6: 15, 7: 16, 9: 16, 10: 18, 11: 19}.get(arch, 16)
        out.append(
            Probe(
                f"HTTPClient (arch {http_arch})",
                (
                    (OptionCode.CLIENT_ARCH, struct.pack("!H", http_arch)),
                    (
                        OptionCode.VENDOR_CLASS_ID,
                        f"HTTPClient:Arch:{http_arch:05d}:UNDI:003001".encode(),
                    ),
                    (OptionCode.CLIENT_UUID, b"\0" + uuid),
                ),
            )
        )
    return out


def discover(mac: bytes, xid: int, probe: Probe) -> bytes:
    """The DISCOVER as a UDP payload (broadcast flag set: we have no address)."""
    return build(
        DhcpPacket(
            op=Op.BOOTREQUEST,
            xid=xid,
            flags=BROADCAST_FLAG,
            chaddr=mac,
            options=((OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))), *probe.options),
        )
    )


def option_text(code: int, value: bytes) -> str:
    """One option as `code name=value`, addresses dotted, strings as text, the rest in hex."""
    try:
        name = OptionCode(code).name.lower().replace("_", "-")
    except ValueError:
        name = "option"
    if code in ADDRESS_OPTIONS and value and len(value) % 4 == 0:
        shown = ",".join(str(IPv4Address(value[i : i + 4])) for i in range(0, len(value), 4))
    elif code == OptionCode.MESSAGE_TYPE and len(value) == 1 and 1 <= value[0] <= 8:
        shown = MessageType(value[0]).name
    elif code in (OptionCode.LEASE_TIME, 58, 59) and len(value) == 4:
        shown = f"{struct.unpack('!I', value)[0]} s"
    elif code in TEXT_OPTIONS and value.isascii() and value.decode().isprintable():
        shown = value.decode()
    else:
        shown = value.hex()
    return f"{code} {name}={shown}"


def describe(reply: DhcpPacket, source: str) -> list[str]:
    """The lines printed for one offer: server, address, next server, file, options."""
    server = reply.option(OptionCode.SERVER_ID)
    server_text = str(IPv4Address(server)) if server and len(server) == 4 else "?"
    lines = [
        f"  offer from {source} (server id {server_text})",
        f"    address      {reply.yiaddr}",
        f"    next server  {reply.siaddr}",
        f"    file         {reply.file.decode(errors='replace') or '(none)'}",
    ]
    lines += [f"    option {option_text(code, value)}" for code, value in reply.options]
    return lines


def run_probe(interface: str, mac: bytes, found: list[Probe], wait: float) -> int:
    """Send each probe, print its offers; exit 0 when the PXE probe got at least one."""
    from scapy.config import conf
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.sendrecv import AsyncSniffer, sendp

    conf.verb = 0
    pxe_offers = 0
    for index, probe in enumerate(found):
        xid = random.getrandbits(32)

        def mine(frame: object, xid: int = xid) -> bool:
            if UDP not in frame or frame[UDP].dport != 68:  # type: ignore[operator,index]
                return False
            payload = bytes(frame[UDP].payload)  # type: ignore[index]
            return len(payload) >= 8 and payload[0] == 2 and payload[4:8] == xid.to_bytes(4, "big")

        started = threading.Event()
        sniffer = AsyncSniffer(
            iface=interface, lfilter=mine, store=True, started_callback=started.set
        )
        sniffer.start()
        # Send only once the sniffer listens (a fixed pause lost fast offers on a busy machine).
        if not started.wait(SNIFFER_START):  # (its thread is a daemon: it ends with us)
            print(f"pxelab probe: cannot listen on {interface}", file=sys.stderr)
            return 2
        mac_text = ":".join(f"{b:02x}" for b in mac)
        frame = (
            Ether(src=mac_text, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / Raw(discover(mac, xid, probe))
        )
        sendp(frame, iface=interface)
        time.sleep(wait)
        replies: list[Any] = list(sniffer.stop() or [])
        print(f"{probe.label} DISCOVER from {mac_text} on {interface}: {len(replies)} offer(s)")
        for answer in replies:
            source = str(answer[IP].src)
            try:
                reply = parse(bytes(answer[UDP].payload))
            except MalformedPacket as exc:
                print(f"  malformed reply from {source}: {exc}")
                continue
            print("\n".join(describe(reply, source)))
            if index == 0:
                pxe_offers += 1
    return 0 if pxe_offers else 1


def cmd_probe(args: argparse.Namespace) -> int:
    mac = bytes.fromhex(args.mac.replace(":", "").replace("-", "")) if args.mac else None
    if mac is None:
        try:
            mac = interface_mac(args.interface)
        except ConfigError as exc:
            print(f"pxelab probe: {exc}", file=sys.stderr)
            return 2
    if len(mac) != 6:
        print(f"pxelab probe: --mac {args.mac!r} is not a 6-byte MAC", file=sys.stderr)
        return 2
    try:
        import scapy  # noqa: F401
    except ImportError:
        print(
            "pxelab probe needs scapy: pip install 'pxelab[probe]' "
            "(or: apt-get install python3-scapy)",
            file=sys.stderr,
        )
        return 2
    found = probes(args.arch, random.randbytes(16), ipxe=args.ipxe, http=args.http)
    return run_probe(args.interface, mac, found, args.wait)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `pxelab probe`."""
    parser = commands.add_parser(
        "probe", help="send a PXE DHCPDISCOVER and print every offer (needs root and scapy)"
    )
    parser.add_argument("--interface", required=True, metavar="IF", help="where to send it")
    parser.add_argument("--mac", help="client MAC to use (default: the interface's)")
    parser.add_argument("--arch", type=int, default=7, help="option 93 value (default 7, x64 UEFI)")
    parser.add_argument("--ipxe", action="store_true", help="also send an iPXE-style DISCOVER")
    parser.add_argument("--http", action="store_true", help="also send an HTTPClient DISCOVER")
    parser.add_argument("--wait", type=float, default=3.0, help="seconds to collect offers")
    parser.set_defaults(func=cmd_probe)

"""A scapy DHCP client for the DHCP tests, run inside a lab namespace: prints replies as JSON.

`python -m tests.integration.dhcp_client_tool MODE JSON`, where MODE is
  dora     DISCOVER, REQUEST the first offer, per MAC in "macs" (one JSON line per MAC);
  collect  one DISCOVER, then every reply seen within "wait" seconds (one line each);
  request  an INIT-REBOOT REQUEST for "ip" (one line: the reply, or null);
  rs       an IPv6 router solicitation; one line: the RA's source and router lifetime, or null;
  solicit6 a DHCPv6 SOLICIT from "mac" with client arch "arch" (option 61) from its link-local
           address; one line: the ADVERTISE's boot file URL (option 59), or null.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Any

from scapy.config import conf
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.sendrecv import AsyncSniffer, sendp

conf.verb = 0


def describe(answer: Packet) -> dict[str, Any]:
    bootp = answer[BOOTP]
    options: dict[str, list[str]] = {}
    for option in bootp[DHCP].options:
        if isinstance(option, tuple):
            options[str(option[0])] = [
                v.hex() if isinstance(v, bytes) and not (v.isascii() and v.decode().isprintable()) else
                (v.decode() if isinstance(v, bytes) else str(v))
                for v in option[1:]
            ]  # fmt: skip
    return {
        "src": answer[IP].src,
        "dst": answer[IP].dst,
        "dport": answer[UDP].dport,
        "yiaddr": bootp.yiaddr,
        "siaddr": bootp.siaddr,
        "file": bootp.file.rstrip(b"\0").decode(),
        "options": options,
    }


def exchange(
    iface: str, mac: str, xid: int, dhcp: list[Any], *, wait: float, first: bool, flags: int
) -> list[dict[str, Any]]:
    """Send one request from `mac` and return the replies to its xid."""
    sniffer = AsyncSniffer(
        iface=iface,
        lfilter=lambda p: BOOTP in p and p[BOOTP].op == 2 and p[BOOTP].xid == xid,
        count=1 if first else 0,
        store=True,
    )
    sniffer.start()
    time.sleep(0.1)  # let the sniffer open its socket
    frame = (
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(op=1, xid=xid, flags=flags, chaddr=bytes.fromhex(mac.replace(":", "")))
        / DHCP(options=dhcp)
    )
    sendp(frame, iface=iface)
    sniffer.join(timeout=wait)
    results = sniffer.stop() if sniffer.running else sniffer.results
    return [describe(p) for p in (results or [])]


def extra_options(config: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(int(code), bytes.fromhex(value)) for code, value in config.get("options", [])]


def main() -> None:
    mode, config = sys.argv[1], json.loads(sys.argv[2])
    iface, extra = config.get("iface", "eth0"), extra_options(config)
    flags = config.get("flags", 0x8000)
    wait = config.get("wait", 5.0)
    if mode == "dora":
        for mac in config["macs"]:
            xid = random.getrandbits(32)
            disc = [("message-type", "discover"), *extra, "end"]
            offers = exchange(iface, mac, xid, disc, wait=wait, first=True, flags=flags)
            if not offers:
                print(json.dumps({"mac": mac, "offer": None, "ack": None}), flush=True)
                continue
            offer = offers[0]
            server = offer["options"]["server_id"][0]
            req = [
                ("message-type", "request"),
                ("requested_addr", offer["yiaddr"]),
                ("server_id", server),
                *extra,
                "end",
            ]
            acks = exchange(iface, mac, xid, req, wait=wait, first=True, flags=flags)
            print(json.dumps({"mac": mac, "offer": offer, "ack": acks[0] if acks else None}))
    elif mode == "collect":
        disc = [("message-type", "discover"), *extra, "end"]
        xid = random.getrandbits(32)
        for reply in exchange(iface, config["mac"], xid, disc, wait=wait, first=False, flags=flags):
            print(json.dumps(reply))
    elif mode == "request":
        req = [("message-type", "request"), ("requested_addr", config["ip"]), *extra, "end"]
        xid = random.getrandbits(32)
        replies = exchange(iface, config["mac"], xid, req, wait=wait, first=True, flags=flags)
        print(json.dumps(replies[0] if replies else None))
    elif mode == "rs":
        from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6ND_RS, IPv6
        from scapy.sendrecv import srp1

        frame = Ether(dst="33:33:00:00:00:02") / IPv6(dst="ff02::2", hlim=255) / ICMPv6ND_RS()
        answer = srp1(frame, iface=iface, timeout=wait)
        if answer is None or ICMPv6ND_RA not in answer:
            print(json.dumps(None))
        else:
            ra = answer[ICMPv6ND_RA]
            print(
                json.dumps(
                    {
                        "src": answer[IPv6].src,
                        "hlim": answer[IPv6].hlim,
                        "routerlifetime": ra.routerlifetime,
                        "M": ra.M,
                        "O": ra.O,
                    }
                )
            )
    elif mode == "solicit6":
        print(json.dumps(solicit6(iface, config["mac"], int(config["arch"]), wait)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def solicit6(iface: str, mac: str, arch: int, wait: float) -> str | None:
    """One SOLICIT to ff02::1:2 from [fe80::…]:546 on iface: the boot file URL answered."""
    import socket

    from scapy.layers.dhcp6 import (
        DUID_LL,
        DHCP6_Advertise,
        DHCP6_Solicit,
        DHCP6OptBootFileUrl,
        DHCP6OptClientArchType,
        DHCP6OptClientId,
        DHCP6OptIA_NA,
    )

    trid = random.getrandbits(24)
    solicit = (
        DHCP6_Solicit(trid=trid)
        / DHCP6OptClientId(duid=DUID_LL(lladdr=mac))
        / DHCP6OptClientArchType(archtypes=[arch])
        / DHCP6OptIA_NA(iaid=1)
    )
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sock.bind(("::", 546))
    sock.settimeout(wait)
    deadline = time.monotonic() + wait
    sock.sendto(bytes(solicit), ("ff02::1:2", 547, 0, socket.if_nametoindex(iface)))
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return None
        answer = DHCP6_Advertise(data)
        if answer.msgtype == 2 and answer.trid == trid:
            url = answer.getlayer(DHCP6OptBootFileUrl)
            return None if url is None else bytes(url.optdata).decode()
    return None


if __name__ == "__main__":
    main()

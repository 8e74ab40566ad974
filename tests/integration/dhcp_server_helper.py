"""Run in lab namespaces by test_dhcp_netns.py: `serve JSON` runs pxelab's DHCP on an interface,
`discover JSON` is a scapy PXE client that prints the server's replies as JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from pxelab.dhcp.context import DhcpContext
from pxelab.dhcp.interface import interface_ipv4
from pxelab.dhcp.server import start_dhcp


@dataclass(frozen=True)
class Host:
    """An inventory entry, as much as the DHCP policy reads."""

    name: str
    mac: str
    ip: IPv4Address | None
    pxeboot: bool
    loader: str | None = None
    secure_boot: bool = False


class Inventory:
    """A fixed inventory from the JSON config."""

    def __init__(self, hosts: list[Host]) -> None:
        self.hosts = {h.mac.lower(): h for h in hosts}

    def lookup(self, mac: str) -> Host | None:
        return self.hosts.get(mac.lower())

    def reserved(self) -> dict[IPv4Address, str]:
        return {h.ip: h.mac for h in self.hosts.values() if h.ip is not None}


async def serve(config: dict[str, Any]) -> None:
    """Serve until SIGTERM; server_ip and network come from the interface. Prints "READY <addr>"."""
    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    address = interface_ipv4(config["interface"])
    hosts = Inventory(
        [
            Host(h["name"], h["mac"], IPv4Address(h["ip"]) if h.get("ip") else None, h["pxeboot"])
            for h in config["hosts"]
        ]
    )
    ctx = DhcpContext(
        server_ip=address.ip,
        network=address.network,
        pool_start=IPv4Address(config["pool_start"]),
        pool_end=IPv4Address(config["pool_end"]),
        router=address.ip,
        dns=(address.ip,),
        lease_time=config.get("lease_time", 600),
        http_port=config.get("http_port", 8080),
    )
    server = await start_dhcp(ctx, hosts, config["interface"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {address}", flush=True)
    await stop.wait()
    server.close()
    server.close()  # idempotent
    await server.wait_closed()


def discover(config: dict[str, Any]) -> None:
    """One DISCOVER from config["iface"], then a REQUEST for the offer if config["request"]."""
    from scapy.config import conf
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import srp1

    conf.checkIPaddr = False  # replies come from the server, not from 255.255.255.255
    conf.verb = 0
    iface, mac = config["iface"], config["mac"]
    extra = [(int(code), bytes.fromhex(value)) for code, value in config["options"]]
    xid = random.getrandbits(32)

    def exchange(kind: str, more: list[tuple[Any, ...]]) -> dict[str, Any] | None:
        frame = (
            Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
            / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67)
            / BOOTP(op=1, xid=xid, flags=0x8000, chaddr=bytes.fromhex(mac.replace(":", "")))
            / DHCP(options=[("message-type", kind), *more, *extra, "end"])
        )
        # The first answer ends the wait: the timeout only bounds a hang (a loaded machine).
        answer = srp1(frame, iface=iface, timeout=config.get("timeout", 15))
        if answer is None or BOOTP not in answer:
            return None
        bootp = answer[BOOTP]
        options = {}
        for option in bootp[DHCP].options:
            if isinstance(option, tuple):
                values = option[1:]
                options[str(option[0])] = [
                    v.decode() if isinstance(v, bytes) else str(v) for v in values
                ]
        return {
            "src": answer[IP].src,
            "dst": answer[IP].dst,
            "yiaddr": bootp.yiaddr,
            "siaddr": bootp.siaddr,
            "file": bootp.file.rstrip(b"\0").decode(),
            "options": options,
        }

    offer = exchange("discover", [])
    print(json.dumps(offer), flush=True)
    if offer is not None and config.get("request"):
        ack = exchange(
            "request", [("requested_addr", offer["yiaddr"]), ("server_id", offer["siaddr"])]
        )
        print(json.dumps(ack), flush=True)


def main() -> None:
    mode, raw = sys.argv[1], sys.argv[2]
    config = json.loads(raw)
    if mode == "serve":
        asyncio.run(serve(config))
    elif mode == "discover":
        discover(config)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()

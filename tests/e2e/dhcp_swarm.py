"""Many DHCP clients at once, as real clients behave: DISCOVER, REQUEST the first OFFER, and retry
from DISCOVER when a server stops answering. Run inside a lab namespace whose `eth0` has an
address (replies come broadcast, to port 68):

    python -m tests.e2e.dhcp_swarm JSON     # {"count": 300, "prefix": "02:5a", "seconds": 60}

Prints one JSON line per client: {"mac", "ip", "server", "tries", "history"} (ip null when it got
none; history says, per try, what was offered by whom and how it ended).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from pxelab.dhcp.packet import (
    BROADCAST_FLAG,
    DhcpPacket,
    MessageType,
    Op,
    OptionCode,
    build,
    parse,
)
from pxelab.errors import MalformedPacket

TIMEOUT = 1.5
"""Seconds a client waits for an OFFER or ACK before it starts again with a DISCOVER."""


@dataclass
class Client:
    """One simulated machine."""

    mac: str
    xid: int = 0
    tries: int = 0
    server: str = ""
    ip: str | None = None
    history: list[str] = field(default_factory=list)
    waiting: asyncio.Future[DhcpPacket] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Swarm(asyncio.DatagramProtocol):
    """Routes replies to clients by xid."""

    def __init__(self) -> None:
        self.by_xid: dict[int, Client] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = parse(data)
        except MalformedPacket:
            return
        client = self.by_xid.get(reply.xid)
        if client is None or reply.op is not Op.BOOTREPLY:
            return
        if client.waiting is not None and not client.waiting.done():
            client.waiting.set_result(reply)

    def send(self, packet: DhcpPacket) -> None:
        if self.transport is None:
            raise RuntimeError("the swarm's socket is not open")
        self.transport.sendto(build(packet), ("255.255.255.255", 67))


def _message(client: Client, kind: MessageType, *extra: tuple[int, bytes]) -> DhcpPacket:
    return DhcpPacket(
        op=Op.BOOTREQUEST,
        xid=client.xid,
        flags=BROADCAST_FLAG,
        chaddr=bytes.fromhex(client.mac.replace(":", "")),
        options=((OptionCode.MESSAGE_TYPE, bytes([kind])), *extra),
    )


async def _exchange(swarm: Swarm, client: Client, packet: DhcpPacket) -> DhcpPacket | None:
    client.waiting = asyncio.get_running_loop().create_future()
    swarm.send(packet)
    try:
        return await asyncio.wait_for(client.waiting, TIMEOUT)
    except TimeoutError:
        return None


def _address(server_id: bytes) -> str:
    return str(IPv4Address(server_id)) if len(server_id) == 4 else ""


def _kind(packet: DhcpPacket) -> int | None:
    value = packet.option(OptionCode.MESSAGE_TYPE)
    return value[0] if value else None


async def lease(swarm: Swarm, client: Client, deadline: float) -> None:
    """DISCOVER -> OFFER -> REQUEST -> ACK, starting over on silence or NAK, until deadline."""
    while time.monotonic() < deadline:
        client.tries += 1
        swarm.by_xid.pop(client.xid, None)
        client.xid = random.getrandbits(32)
        swarm.by_xid[client.xid] = client
        offer = await _exchange(swarm, client, _message(client, MessageType.DISCOVER))
        if offer is None or _kind(offer) != MessageType.OFFER:
            client.history.append("no OFFER")
            continue
        server_id = offer.option(OptionCode.SERVER_ID) or b""
        offered = f"{offer.yiaddr} from {_address(server_id)}"
        request = _message(
            client,
            MessageType.REQUEST,
            (OptionCode.REQUESTED_IP, offer.yiaddr.packed),
            (OptionCode.SERVER_ID, server_id),
        )
        ack = await _exchange(swarm, client, request)
        if ack is not None and _kind(ack) == MessageType.ACK:
            client.ip = str(ack.yiaddr)
            client.server = _address(server_id)
            client.history.append(f"{offered}: ACK")
            break
        client.history.append(f"{offered}: {'no reply' if ack is None else _kind(ack)}")
        await asyncio.sleep(random.uniform(0.1, 0.5))
    client.done.set()


async def main(count: int, prefix: str, seconds: float, stagger: float) -> list[Client]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # The namespace has no default route: broadcasts leave by the device the socket is bound to.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    sock.bind(("0.0.0.0", 68))
    _, swarm = await loop.create_datagram_endpoint(Swarm, sock=sock)
    clients = [
        Client(f"{prefix}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01")
        for i in range(count)
    ]
    deadline = time.monotonic() + seconds
    tasks = []
    for client in clients:
        tasks.append(asyncio.create_task(lease(swarm, client, deadline)))
        await asyncio.sleep(stagger)
    await asyncio.gather(*tasks)
    return clients


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    result = asyncio.run(
        main(
            int(config.get("count", 100)),
            str(config.get("prefix", "02:5a")),
            float(config.get("seconds", 60)),
            float(config.get("stagger", 0.01)),
        )
    )
    for c in result:
        row = {"mac": c.mac, "ip": c.ip, "server": c.server, "tries": c.tries}
        print(json.dumps(row | {"history": c.history}))

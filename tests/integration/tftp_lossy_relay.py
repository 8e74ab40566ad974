"""A lossy UDP relay for TFTP tests: drops, delays (so reorders) and duplicates datagrams.

It stands between a client and the server on loopback and keeps TFTP's transfer IDs apart: each
server TID gets its own relay socket, so the client locks on to that socket's port as its TID.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass

Address = tuple[str, int]


@dataclass(frozen=True)
class Impairment:
    """What happens to each datagram crossing the relay, in either direction."""

    loss: float = 0.1
    """Probability that a datagram is dropped."""
    reorder: float = 0.25
    """Probability that a datagram is held back by up to `max_delay` (later ones overtake it)."""
    max_delay: float = 0.004
    """Longest hold-back in seconds."""
    duplicate: float = 0.02
    """Probability that a datagram is sent twice."""
    spare_handshake: bool = False
    """Never touch RRQ, OACK and ACK 0 (atftp 0.8 aborts on a repeated OACK: "unexpected OACK")."""
    drop_handshake: frozenset[str] = frozenset()
    """Of "RRQ", "OACK", "ACK 0": drop the first of each named here for each client, for certain,
    so an end must recover the handshake itself (the random impairment applies to the rest)."""


HANDSHAKE = {b"\0\1": "RRQ", b"\0\6": "OACK", b"\0\4\0\0": "ACK 0"}
"""The first bytes of RRQ, OACK and ACK 0, and their names."""


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from a finished peer: a lossy link does not care


class LossyRelay:
    """Listens on `port` (loopback) and relays to `server`; counts what it did to the traffic."""

    def __init__(self, server: Address, impairment: Impairment, seed: int) -> None:
        self.server = server
        self.impairment = impairment
        self.port = 0
        """The port clients send their requests to."""
        self.stats = {"relayed": 0, "dropped": 0, "delayed": 0, "duplicated": 0}
        """Datagrams per fate."""
        self.handshake_dropped: set[tuple[Address, str]] = set()
        """(client, name) of each handshake datagram dropped by `drop_handshake`."""
        self._rng = random.Random(seed)
        self._loop = asyncio.get_running_loop()
        self._sockets: list[_Socket] = []
        self._opening: dict[object, asyncio.Task[_Socket]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: _Socket | None = None

    async def start(self) -> LossyRelay:
        self._listener = await self._open(
            lambda data, client: self._from_client(data, client, None)
        )
        assert self._listener.transport is not None
        self.port = self._listener.transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sock in self._sockets:
            if sock.transport is not None:
                sock.transport.close()

    async def _open(self, on_datagram: Callable[[bytes, Address], None]) -> _Socket:
        _, sock = await self._loop.create_datagram_endpoint(
            lambda: _Socket(on_datagram), local_addr=(self.server[0], 0)
        )
        self._sockets.append(sock)
        return sock

    def _from_client(self, data: bytes, client: Address, server_tid: Address | None) -> None:
        """Client -> server: the request goes to the well-known port, the rest to the TID."""
        self._spawn(self._forward_up(data, client, server_tid or self.server))

    async def _forward_up(self, data: bytes, client: Address, target: Address) -> None:
        upstream = await self._socket(
            ("up", client), lambda: self._open(lambda d, tid: self._from_server(d, tid, client))
        )
        self._impair(upstream, data, target, client)

    def _from_server(self, data: bytes, server_tid: Address, client: Address) -> None:
        self._spawn(self._forward_down(data, server_tid, client))

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_down(self, data: bytes, server_tid: Address, client: Address) -> None:
        downstream = await self._socket(
            ("down", client, server_tid),
            lambda: self._open(lambda d, c: self._from_client(d, c, server_tid)),
        )
        self._impair(downstream, data, client, client)

    async def _socket(self, key: object, factory: Callable[[], Awaitable[_Socket]]) -> _Socket:
        """One relay socket per key, opened once even when datagrams race to open it."""
        task = self._opening.get(key)
        if task is None:
            task = self._opening[key] = self._loop.create_task(_wrap(factory))
        return await task

    def _impair(self, sock: _Socket, data: bytes, target: Address, client: Address) -> None:
        rng, imp = self._rng, self.impairment
        kind = next((name for k, name in HANDSHAKE.items() if data.startswith(k)), None)
        once = (client, kind or "")
        if kind in imp.drop_handshake and once not in self.handshake_dropped:
            self.handshake_dropped.add(once)
            self.stats["dropped"] += 1
            return
        if imp.spare_handshake and kind is not None:
            self._send(sock, data, target)
            return
        if rng.random() < imp.loss:
            self.stats["dropped"] += 1
            return
        copies = 1
        if rng.random() < imp.duplicate:
            self.stats["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            if rng.random() < imp.reorder:
                self.stats["delayed"] += 1
                self._loop.call_later(rng.uniform(0, imp.max_delay), self._send, sock, data, target)
            else:
                self._send(sock, data, target)

    def _send(self, sock: _Socket, data: bytes, target: Address) -> None:
        if sock.transport is not None and not sock.transport.is_closing():
            self.stats["relayed"] += 1
            sock.transport.sendto(data, target)


async def _wrap(factory: Callable[[], Awaitable[_Socket]]) -> _Socket:
    return await factory()

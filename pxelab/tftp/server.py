"""TFTP transport on asyncio: a listener for requests and one ephemeral socket per read transfer.

Decisions live in `session` and `paths`; this module moves bytes, arms timers, reads files, logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import cast

from pxelab.errors import MalformedPacket
from pxelab.events import Timeline
from pxelab.tftp.files import FileCache, FileSource, NotAFileError, Opened, open_source
from pxelab.tftp.packet import (
    Ack,
    ErrorCode,
    ErrorPacket,
    Packet,
    ReadRequest,
    WriteRequest,
    build,
    parse,
)
from pxelab.tftp.paths import PathRefused
from pxelab.tftp.session import (
    MIN_BLKSIZE,
    Ending,
    Outcome,
    ReadSession,
    SessionConfig,
    Step,
    check_request,
)

__all__ = ["TftpServer", "start_tftp"]

log = logging.getLogger("pxelab.tftp")

Address = tuple[str, int]

_IP_MTU = 14
"""getsockopt(IPPROTO_IP, IP_MTU) from <linux/in.h>: path MTU of a connected socket."""
_HEADERS = 20 + 8 + 4
"""IPv4 + UDP + TFTP DATA header bytes: blksize + _HEADERS must fit in the path MTU."""
_REQUEST_OPCODES = (b"\0\1", b"\0\2")
"""First bytes of an RRQ or WRQ: a malformed one of these gets an ERROR back, other junk not."""
_ACK = b"\0\4"
"""First bytes of an ACK: parsed inline, it is the packet of the hot path."""
MAX_SESSIONS = 512
"""Default cap on transfers in flight (requests being opened count too)."""
MAX_PER_CLIENT = 16
"""Default cap on transfers in flight from one client IP address."""


async def start_tftp(
    root: Path,
    host: str = "0.0.0.0",
    port: int = 69,
    *,
    interface: str | None = None,
    config: SessionConfig | None = None,
    max_sessions: int = MAX_SESSIONS,
    max_per_client: int = MAX_PER_CLIENT,
    cache: FileCache | None = None,
    timeline: Timeline | None = None,
) -> TftpServer:
    """Serve files under `root` read-only on UDP (host, port); port 0 picks a free port.

    Requests beyond `max_sessions` transfers, or `max_per_client` from one IP, are dropped
    (the client retries). Every request's outcome goes to `timeline` as stage "tftp".
    """
    if max_sessions < 1 or max_per_client < 1:
        raise ValueError(f"TFTP caps must be >= 1, not {max_sessions} and {max_per_client}")
    real_root = Path(os.path.realpath(root))
    if not real_root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "TFTP root is not a directory", str(root))
    loop = asyncio.get_running_loop()
    server = TftpServer(real_root, host, interface, config or SessionConfig())
    server.max_sessions, server.max_per_client = max_sessions, max_per_client
    server.cache = cache or FileCache()
    server.timeline = timeline
    sock = _udp_socket(host, port, interface)
    try:
        transport, _ = await loop.create_datagram_endpoint(lambda: _Listener(server), sock=sock)
    except BaseException:
        sock.close()
        raise
    server._listening(transport)
    log.info("TFTP serving %s on %s:%d", real_root, host, server.port)
    return server


class TftpServer:
    """A running TFTP server; `close()` stops it and every transfer in flight."""

    def __init__(self, real_root: Path, host: str, interface: str | None, config: SessionConfig):
        self.root = real_root
        """Resolved root directory; nothing outside it is served."""
        self.port = 0
        """The bound UDP port."""
        self.max_sessions = MAX_SESSIONS
        """Transfers in flight at most; more requests are dropped."""
        self.max_per_client = MAX_PER_CLIENT
        """Transfers in flight from one client IP at most."""
        self.cache = FileCache()
        """Small files kept in memory."""
        self.timeline: Timeline | None = None
        """Where each request's outcome is recorded (stage "tftp"), if anywhere."""
        self.refused_busy = 0
        """Requests dropped because a cap was reached."""
        self._clients: set[Address] = set()
        self._per_ip: Counter[str] = Counter()
        self._host = host
        self._interface = interface
        self._config = config
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._transfers: set[_Transfer] = set()
        self._draining: list[asyncio.Future[None]] = []
        self._closing = False

    def close(self) -> None:
        """Stop listening and abort transfers in flight; calling it again does nothing."""
        if self._closing:
            return
        self._closing = True
        if self._transport is not None:
            self._transport.close()
        elif not self._closed.done():
            self._closed.set_result(None)
        for task in list(self._tasks):
            task.cancel()
        for transfer in list(self._transfers):
            self._draining.append(transfer.lost)
            transfer.abort("server closing")

    async def wait_closed(self) -> None:
        """Wait until the listener and the aborted transfers' sockets are closed."""
        await asyncio.shield(self._closed)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._draining:
            await asyncio.gather(*self._draining)

    def _listening(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def _listener_lost(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)

    @property
    def sessions(self) -> int:
        """Requests being opened plus transfers in flight."""
        return len(self._clients)

    def _reply(self, error: ErrorPacket, client: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(build(error), client)

    def _record(self, client: Address, detail: str) -> None:
        if self.timeline is not None:
            self.timeline.record(time.time(), "tftp", detail, ip=client[0])

    def _refuse(self, client: Address, name: str, error: ErrorPacket, why: str) -> None:
        log.info("%s RRQ %r: %s", _peer(client), name, why)
        self._record(client, f"{name}: {why}")
        self._reply(error, client)

    def _admit(self, request: ReadRequest, client: Address) -> bool:
        """Take a slot for a new request; False (logged) when it must be dropped."""
        if client in self._clients:
            # The client repeated its RRQ (our first answer was lost): its transfer answers it.
            log.debug("%s repeated RRQ %r; ignored", _peer(client), request.filename)
            return False
        ip = client[0]
        if len(self._clients) >= self.max_sessions:
            why = f"{len(self._clients)} transfers in flight (tftp_max_sessions)"
        elif self._per_ip[ip] >= self.max_per_client:
            why = f"{self._per_ip[ip]} transfers in flight for {ip} (tftp_max_per_client)"
        else:
            self._clients.add(client)
            self._per_ip[ip] += 1
            return True
        self.refused_busy += 1
        log.warning("%s RRQ %r: dropped, %s", _peer(client), request.filename, why)
        return False

    def _release(self, client: Address) -> None:
        if client in self._clients:
            self._clients.discard(client)
            self._per_ip[client[0]] -= 1
            if self._per_ip[client[0]] <= 0:
                del self._per_ip[client[0]]

    def _datagram(self, data: bytes, client: Address) -> None:
        peer = _peer(client)
        try:
            packet = parse(data)
        except MalformedPacket as exc:
            log.warning("%s sent a malformed request: %s", peer, exc)
            if data[:2] in _REQUEST_OPCODES:
                self._reply(ErrorPacket(ErrorCode.ILLEGAL_OPERATION, "malformed request"), client)
            return
        if isinstance(packet, ReadRequest):
            if self._closing or not self._admit(packet, client):
                return
            task = asyncio.get_running_loop().create_task(self._serve(packet, client))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        elif isinstance(packet, WriteRequest):
            log.info("%s WRQ %r: refused, error 2 (read-only server)", peer, packet.filename)
            self._record(client, f"{packet.filename}: upload refused (read-only server)")
            self._reply(ErrorPacket(ErrorCode.ACCESS_VIOLATION, "read-only server"), client)
        else:
            # Late packets of a finished exchange land here: tftp-hpa ACKs the ERROR it got.
            log.debug("%s sent %s to the listener; ignored", peer, type(packet).__name__)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("TFTP request handler failed: %r", exc, exc_info=exc)

    async def _serve(self, request: ReadRequest, client: Address) -> None:
        started = False
        try:
            started = await self._open_and_start(request, client)
        finally:
            if not started:
                self._release(client)

    async def _open_and_start(self, request: ReadRequest, client: Address) -> bool:
        """Answer the RRQ; True once a transfer owns the client's slot."""
        peer, name = _peer(client), request.filename
        refusal = check_request(request)
        if refusal is not None:
            self._refuse(client, name, refusal, f"error {refusal.code} ({refusal.message})")
            return False
        netascii = request.mode == "netascii"
        try:
            opened = await asyncio.to_thread(open_source, self.root, name, netascii, self.cache)
        except PathRefused as exc:
            error = ErrorPacket(ErrorCode.ACCESS_VIOLATION, str(exc))
            self._refuse(client, name, error, f"refused, error 2 (access violation): {exc}")
            return False
        except (FileNotFoundError, NotADirectoryError):
            error = ErrorPacket(ErrorCode.FILE_NOT_FOUND, "file not found")
            self._refuse(client, name, error, "error 1 (file not found)")
            return False
        except (PermissionError, NotAFileError) as exc:
            error = ErrorPacket(ErrorCode.ACCESS_VIOLATION, "access violation")
            self._refuse(client, name, error, f"error 2 (access violation): {exc}")
            return False
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self._refuse(
                client, name, ErrorPacket(ErrorCode.NOT_DEFINED, reason), f"error 0 ({reason})"
            )
            return False
        if self._closing:
            _close_source(opened)
            return False
        try:
            await self._start_transfer(request, client, opened)
        except OSError as exc:
            _close_source(opened)
            log.warning("%s RRQ %r: cannot open a transfer socket: %s", peer, name, exc)
            self._reply(
                ErrorPacket(ErrorCode.NOT_DEFINED, "server cannot start a transfer"), client
            )
            return False
        return True

    async def _start_transfer(self, request: ReadRequest, client: Address, opened: Opened) -> None:
        loop = asyncio.get_running_loop()
        sock = _udp_socket(self._host, 0, self._interface, connect=client)
        config = self._config
        mtu = _path_mtu(sock)
        if mtu is not None and mtu - _HEADERS < config.max_blksize:
            config = dataclasses.replace(config, max_blksize=max(MIN_BLKSIZE, mtu - _HEADERS))
        session = ReadSession(opened.source, request.options, config)
        transfer = _Transfer(self, session, request, client, opened, loop.time())
        try:
            await loop.create_datagram_endpoint(lambda: transfer, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._transfers.add(transfer)
        if self._closing:
            transfer.abort("server closing")
            return
        transfer.apply(session.start(loop.time()))


class _Listener(asyncio.DatagramProtocol):
    """Hands datagrams that reach the well-known port to the server."""

    def __init__(self, server: TftpServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._server._datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("TFTP listener socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._listener_lost()


class _Transfer(asyncio.DatagramProtocol):
    """One read transfer: feeds packets and timer expiries to its session, sends what it says."""

    def __init__(
        self,
        server: TftpServer,
        session: ReadSession,
        request: ReadRequest,
        client: Address,
        opened: Opened,
        started: float,
    ) -> None:
        self._server = server
        self._session = session
        self._opened = opened
        self._request = request
        self._client = client
        self._started = started
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
        self.lost: asyncio.Future[None] = self._loop.create_future()
        """Done once the transfer's socket is closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport only subclasses DatagramTransport from 3.12.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        packet: Packet
        if data[:2] == _ACK and len(data) >= 4:
            packet = Ack(int.from_bytes(data[2:4], "big"))
        else:
            try:
                packet = parse(data)
            except MalformedPacket as exc:
                log.warning("%s sent a malformed datagram during a transfer: %s", _peer(addr), exc)
                return
        self.apply(self._session.receive(packet, self._loop.time()))

    def error_received(self, exc: Exception) -> None:
        # The socket is connected, so ICMP port unreachable arrives here: the client is gone.
        if isinstance(exc, ConnectionRefusedError):
            self.abort("client unreachable")
        else:
            log.debug("%s transfer socket error: %s", _peer(self._client), exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def apply(self, step: Step) -> None:
        """Send the step's datagrams, then end the transfer or make sure a timer is armed."""
        if self._done or self._transport is None:
            return
        for datagram in step.send:
            self._transport.sendto(datagram)
        if step.outcome is not None:
            self._finish(step.outcome)
        elif step.deadline is not None and (
            self._timer is None or step.deadline < self._timer.when()
        ):
            # Deadlines move later on each ACK; keep the armed timer, expire() re-arms if early.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(step.deadline, self._expire)

    def abort(self, reason: str) -> None:
        """Stop the transfer without telling the client (server closing, client gone)."""
        if self._done:
            return
        acked, size = self._session.bytes_acked, self._session.size
        log.info(
            "%s RRQ %r: stopped, %s (%d of %d bytes acknowledged)",
            _peer(self._client),
            self._request.filename,
            reason,
            acked,
            size,
        )
        self._server._record(
            self._client, f"{self._request.filename}: stopped, {reason} ({acked} of {size} bytes)"
        )
        self._close()

    def _expire(self) -> None:
        self._timer = None
        self.apply(self._session.expire(self._loop.time()))

    def _finish(self, outcome: Outcome) -> None:
        elapsed = self._loop.time() - self._started
        detail = _log_outcome(_peer(self._client), self._request, self._session, outcome, elapsed)
        self._server._record(self._client, f"{self._request.filename}: {detail}")
        self._close()

    def _close(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        _close_source(self._opened)
        self._server._transfers.discard(self)
        self._server._release(self._client)


def _close_source(opened: Opened) -> None:
    if isinstance(opened.source, FileSource):
        opened.source.close()


def _log_outcome(
    peer: str, request: ReadRequest, session: ReadSession, outcome: Outcome, elapsed: float
) -> str:
    """Log the end of a transfer on one line; return its short form for the timeline."""
    name, error = request.filename, outcome.error
    code, reason = (error.code, error.message) if error else (0, "")
    negotiated = session.negotiated
    if outcome.ending is Ending.COMPLETED:
        detail = f"sent {outcome.bytes_acked} bytes"
        log.info(
            "%s RRQ %r: %s in %.3f s (blksize %d, windowsize %d)",
            peer,
            name,
            detail,
            elapsed,
            negotiated.blksize,
            negotiated.windowsize,
        )
        return detail
    if outcome.ending is Ending.ABORTED_AFTER_OACK:
        tsize = negotiated.oack.get("tsize")
        tsize_text = f" (tsize {tsize})" if tsize is not None else ""
        detail = f"aborted after OACK{tsize_text}, client error {code} ({reason})"
    elif outcome.ending is Ending.CLIENT_ERROR:
        detail = f"client error {code} ({reason}) after {outcome.bytes_acked} bytes"
    elif outcome.ending is Ending.TIMED_OUT:
        detail = f"timed out, {outcome.bytes_acked} of {session.size} bytes acknowledged"
    elif outcome.ending is Ending.IDLE:
        detail = f"reaped, idle with {outcome.bytes_acked} of {session.size} bytes acknowledged"
    else:
        detail = f"error {code} ({reason})"
    log.info("%s RRQ %r: %s", peer, name, detail)
    return detail


def _udp_socket(
    host: str, port: int, interface: str | None, *, connect: Address | None = None
) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port), optionally tied to a device and peer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if interface is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((host, port))
        if connect is not None:
            sock.connect(connect)
    except BaseException:
        sock.close()
        raise
    return sock


def _path_mtu(sock: socket.socket) -> int | None:
    """Path MTU towards the connected peer (Linux, IPv4); None when unknown."""
    if not sys.platform.startswith("linux") or sock.family != socket.AF_INET:
        return None
    try:
        return sock.getsockopt(socket.IPPROTO_IP, _IP_MTU)
    except OSError:
        return None


def _peer(addr: Address) -> str:
    return f"{addr[0]}:{addr[1]}"

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
import stat
import sys
from pathlib import Path
from typing import cast

from pxelab.errors import MalformedPacket
from pxelab.tftp.packet import (
    ErrorCode,
    ErrorPacket,
    ReadRequest,
    WriteRequest,
    build,
    parse,
)
from pxelab.tftp.paths import PathRefused, resolve
from pxelab.tftp.session import (
    MIN_BLKSIZE,
    Ending,
    MemorySource,
    Outcome,
    ReadSession,
    SessionConfig,
    Step,
    check_request,
    to_netascii,
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


async def start_tftp(
    root: Path,
    host: str = "0.0.0.0",
    port: int = 69,
    *,
    interface: str | None = None,
    config: SessionConfig | None = None,
) -> TftpServer:
    """Serve files under `root` read-only on UDP (host, port); port 0 picks a free port."""
    real_root = Path(os.path.realpath(root))
    if not real_root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "TFTP root is not a directory", str(root))
    loop = asyncio.get_running_loop()
    server = TftpServer(real_root, host, interface, config or SessionConfig())
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

    def _reply(self, error: ErrorPacket, client: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(build(error), client)

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
            task = asyncio.get_running_loop().create_task(self._serve(packet, client))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        elif isinstance(packet, WriteRequest):
            log.info("%s WRQ %r: refused, error 2 (read-only server)", peer, packet.filename)
            self._reply(ErrorPacket(ErrorCode.ACCESS_VIOLATION, "read-only server"), client)
        else:
            # Late packets of a finished exchange land here: tftp-hpa ACKs the ERROR it got.
            log.debug("%s sent %s to the listener; ignored", peer, type(packet).__name__)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("TFTP request handler failed: %r", exc, exc_info=exc)

    async def _serve(self, request: ReadRequest, client: Address) -> None:
        peer, name = _peer(client), request.filename
        refusal = check_request(request)
        if refusal is not None:
            log.info("%s RRQ %r: error %d (%s)", peer, name, refusal.code, refusal.message)
            self._reply(refusal, client)
            return
        try:
            content = await asyncio.to_thread(_load, self.root, name)
        except PathRefused as exc:
            log.info("%s RRQ %r: refused, error 2 (access violation): %s", peer, name, exc)
            self._reply(ErrorPacket(ErrorCode.ACCESS_VIOLATION, str(exc)), client)
            return
        except (FileNotFoundError, NotADirectoryError):
            log.info("%s RRQ %r: error 1 (file not found)", peer, name)
            self._reply(ErrorPacket(ErrorCode.FILE_NOT_FOUND, "file not found"), client)
            return
        except (PermissionError, _NotAFileError) as exc:
            log.info("%s RRQ %r: error 2 (access violation): %s", peer, name, exc)
            self._reply(ErrorPacket(ErrorCode.ACCESS_VIOLATION, "access violation"), client)
            return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            log.info("%s RRQ %r: error 0 (%s)", peer, name, reason)
            self._reply(ErrorPacket(ErrorCode.NOT_DEFINED, reason), client)
            return
        if self._closing:
            return
        if request.mode == "netascii":
            content = to_netascii(content)
        try:
            await self._start_transfer(request, client, content)
        except OSError as exc:
            log.warning("%s RRQ %r: cannot open a transfer socket: %s", peer, name, exc)
            self._reply(
                ErrorPacket(ErrorCode.NOT_DEFINED, "server cannot start a transfer"), client
            )

    async def _start_transfer(self, request: ReadRequest, client: Address, content: bytes) -> None:
        loop = asyncio.get_running_loop()
        sock = _udp_socket(self._host, 0, self._interface, connect=client)
        config = self._config
        mtu = _path_mtu(sock)
        if mtu is not None and mtu - _HEADERS < config.max_blksize:
            config = dataclasses.replace(config, max_blksize=max(MIN_BLKSIZE, mtu - _HEADERS))
        session = ReadSession(MemorySource(content), request.options, config)
        transfer = _Transfer(self, session, request, client, loop.time())
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
        started: float,
    ) -> None:
        self._server = server
        self._session = session
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
        log.info(
            "%s RRQ %r: stopped, %s (%d of %d bytes acknowledged)",
            _peer(self._client),
            self._request.filename,
            reason,
            self._session.bytes_acked,
            self._session.size,
        )
        self._close()

    def _expire(self) -> None:
        self._timer = None
        self.apply(self._session.expire(self._loop.time()))

    def _finish(self, outcome: Outcome) -> None:
        elapsed = self._loop.time() - self._started
        _log_outcome(_peer(self._client), self._request, self._session, outcome, elapsed)
        self._close()

    def _close(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        self._server._transfers.discard(self)


def _log_outcome(
    peer: str, request: ReadRequest, session: ReadSession, outcome: Outcome, elapsed: float
) -> None:
    name, error = request.filename, outcome.error
    code, reason = (error.code, error.message) if error else (0, "")
    if outcome.ending is Ending.COMPLETED:
        log.info(
            "%s RRQ %r: sent %d bytes in %.3f s (blksize %d, windowsize %d)",
            peer,
            name,
            outcome.bytes_acked,
            elapsed,
            session.negotiated.blksize,
            session.negotiated.windowsize,
        )
    elif outcome.ending is Ending.ABORTED_AFTER_OACK:
        tsize = session.negotiated.oack.get("tsize")
        log.info(
            "%s RRQ %r: aborted after OACK%s, client error %d (%s)",
            peer,
            name,
            f" (tsize {tsize})" if tsize is not None else "",
            code,
            reason,
        )
    elif outcome.ending is Ending.CLIENT_ERROR:
        log.info(
            "%s RRQ %r: client error %d (%s) after %d bytes",
            peer,
            name,
            code,
            reason,
            outcome.bytes_acked,
        )
    elif outcome.ending is Ending.TIMED_OUT:
        log.info(
            "%s RRQ %r: timed out, %d of %d bytes acknowledged",
            peer,
            name,
            outcome.bytes_acked,
            session.size,
        )
    else:
        log.info("%s RRQ %r: error %d (%s)", peer, name, code, reason)


class _NotAFileError(OSError):
    """The path exists but is not a regular file (directory, FIFO, device)."""


def _load(real_root: Path, filename: str) -> bytes:
    """Resolve `filename` under the root and read the whole regular file (runs in a thread)."""
    path = resolve(real_root, filename)
    # O_NONBLOCK: opening a FIFO must not hang; O_NOFOLLOW: the resolved path has no symlink left.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotAFileError(errno.EACCES, "not a regular file")
        file = open(fd, "rb")  # noqa: SIM115 - takes over the descriptor, closed below
    except BaseException:
        os.close(fd)
        raise
    with file:
        return file.read()


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

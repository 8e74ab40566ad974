"""One TFTP read transfer on its own socket: packets and timer expiries in, the session's datagrams out.

A large file's next chunk is read in a worker thread before the session needs it (`span`); events
that arrive meanwhile wait in a short queue. Nothing here reads a file on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from functools import partial
from typing import Any, cast

from pxelab.errors import MalformedPacket
from pxelab.events import Event
from pxelab.tftp.admission import refusal
from pxelab.tftp.batch import GSO, run_end, send_run
from pxelab.tftp.files import FileSource, Opened
from pxelab.tftp.packet import Ack, ErrorCode, ErrorPacket, Packet, ReadRequest, build, parse
from pxelab.tftp.report import log_outcome, stopped_event, transfer_event
from pxelab.tftp.session import Outcome, ReadSession, Step
from pxelab.tftp.sockets import Address, peer

__all__ = ["Transfer", "close_source"]

log = logging.getLogger("pxelab.tftp")

_ACK = b"\0\4"
"""First bytes of an ACK: parsed inline, it is the packet of the hot path."""
_MAX_DATAGRAM = 65536
"""Receive buffer per datagram: the largest UDP payload fits."""
_MAX_QUEUED = 64
"""Packets kept while a read is in flight; more are dropped (the client retransmits)."""


class _Tick(Enum):
    """Session events that are not packets."""

    START = "start"
    EXPIRE = "expire"


class Transfer(asyncio.DatagramProtocol):
    """One read transfer: feeds packets and timer expiries to its session, sends what it says."""

    def __init__(
        self,
        session: ReadSession,
        request: ReadRequest,
        client: Address,
        opened: Opened,
        *,
        record: Callable[[Event], None],
        ended: Callable[[Transfer], None],
    ) -> None:
        self._session = session
        self._opened = opened
        self._file = opened.source if isinstance(opened.source, FileSource) else None
        self.request = request
        """The RRQ being served."""
        self.client = client
        """The client's address and port."""
        self._record = record
        self._ended = ended
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._events: deque[Packet | _Tick] = deque()
        self._reading: asyncio.Future[bytes] | None = None
        self._socket_closed = False
        self._done = False
        self.lost: asyncio.Future[None] = self._loop.create_future()
        """Done once the transfer's socket is closed and its file released."""

    @property
    def done(self) -> bool:
        """True once the transfer has ended (completed, failed or aborted)."""
        return self._done

    @property
    def timer_armed(self) -> bool:
        """True while a retransmission timer is pending."""
        return self._timer is not None

    def use_socket(self, sock: socket.socket) -> None:
        """The raw connected socket, sent on directly (asyncio's wrapper has no send())."""
        self._sock = sock

    def start(self) -> None:
        """Send the OACK or the first window (once the bytes it needs are loaded)."""
        self._push(_Tick.START)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector datagram transport only subclasses DatagramTransport from 3.12.
        self._transport = cast(asyncio.DatagramTransport, transport)
        if hasattr(transport, "max_size"):
            # It reads each datagram into a new 256 KiB buffer, which glibc may map and unmap
            # per ACK (measured: twice the server CPU per block). A datagram fits in 64 KiB.
            cast(Any, transport).max_size = _MAX_DATAGRAM

    def datagram_received(self, data: bytes, addr: Address) -> None:
        packet: Packet
        if data[:2] == _ACK and len(data) >= 4:
            packet = Ack(int.from_bytes(data[2:4], "big"))
        else:
            try:
                packet = parse(data)
            except MalformedPacket as exc:
                log.warning("%s sent a malformed datagram during a transfer: %s", peer(addr), exc)
                return
        if len(self._events) >= _MAX_QUEUED:
            return  # a read is slow and the client floods: lost like any datagram
        self._push(packet)

    def error_received(self, exc: Exception) -> None:
        # The socket is connected, so ICMP port unreachable arrives here: the client is gone.
        if isinstance(exc, ConnectionRefusedError):
            self.abort("client unreachable")
        else:
            log.debug("%s transfer socket error: %s", peer(self.client), exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._socket_closed = True
        self._maybe_lost()

    def _push(self, event: Packet | _Tick) -> None:
        self._events.append(event)
        if self._reading is None:
            self._pump()

    def _pump(self) -> None:
        """Feed queued events to the session, loading the bytes it may read before each one."""
        session, file = self._session, self._file
        while self._events and not self._done:
            if file is not None and (wanted := file.wanted(*session.span())) is not None:
                self._read(*wanted)
                return
            event = self._events.popleft()
            now = self._loop.time()
            if event is _Tick.START:
                self.apply(session.start(now))
            elif event is _Tick.EXPIRE:
                self.apply(session.expire(now))
            else:
                self.apply(session.receive(event, now))

    def _read(self, offset: int, length: int) -> None:
        file = self._file
        if file is None:
            return
        self._reading = self._loop.run_in_executor(None, file.pread, offset, length)
        self._reading.add_done_callback(partial(self._read_done, offset, length))

    def _read_done(self, offset: int, length: int, future: asyncio.Future[bytes]) -> None:
        self._reading = None
        if self._done or self._file is None or future.cancelled():
            self._release_file()  # closed meanwhile: the worker no longer uses the descriptor
            if not self._done:
                self.abort("file read cancelled")
            return
        exc = future.exception()
        if exc is None:
            self._file.load(offset, length, future.result())
            self._pump()
            return
        mapped = refusal(exc) if isinstance(exc, Exception) else None
        error = mapped.error if mapped else ErrorPacket(ErrorCode.NOT_DEFINED, "read error")
        self._send((build(error),))
        self.abort(f"cannot read the file: {exc}")

    def apply(self, step: Step) -> None:
        """Send the step's datagrams, then end the transfer or make sure a timer is armed."""
        if self._done or self._transport is None:
            return
        self._send(step.send)
        if step.outcome is not None:
            self._finish(step.outcome)
        elif step.deadline is not None and (
            self._timer is None or step.deadline < self._timer.when()
        ):
            # Deadlines move later on each ACK; keep the armed timer, expire() re-arms if early.
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(step.deadline, self._expire)

    def _send(self, datagrams: tuple[bytes, ...]) -> None:
        """Send on the connected socket directly (the hot path): runs of equal-sized blocks in
        one GSO `sendmsg` each (`batch`), else one `send` per datagram; once the socket buffer
        is full, the transport queues the rest."""
        transport, sock = self._transport, self._sock
        if transport is None:
            return
        # The selector datagram transport has a write buffer (typeshed does not say so).
        if sock is None or cast(asyncio.WriteTransport, transport).get_write_buffer_size():
            for datagram in datagrams:
                transport.sendto(datagram)
            return
        start, count = 0, len(datagrams)
        while start < count:
            end = run_end(datagrams, start) if GSO.enabled and count - start > 1 else start + 1
            try:
                if end - start > 1:
                    send_run(sock, datagrams[start:end], len(datagrams[start]))
                else:
                    sock.send(datagrams[start])
            except BlockingIOError:
                # the socket buffer is full: the transport queues from here on
                for datagram in datagrams[start:]:
                    transport.sendto(datagram)
                return
            except ConnectionRefusedError:
                self.abort("client unreachable")
                return
            except OSError as exc:
                if end - start > 1 and GSO.refused(exc):
                    continue  # the same datagrams again, one send each
                # Lost like any datagram on a lossy link: the retransmission timer recovers.
                log.debug("%s transfer send failed: %s", peer(self.client), exc)
                return
            start = end

    def abort(self, reason: str) -> None:
        """Stop the transfer without telling the client (server closing, client gone)."""
        if self._done:
            return
        acked, size = self._session.bytes_acked, self._session.size
        name = self.request.filename
        log.info(
            "%s RRQ %r: stopped, %s (%d of %d bytes acknowledged)",
            peer(self.client),
            name,
            reason,
            acked,
            size,
        )
        self._record(stopped_event(time.time(), self.client[0], name, reason, acked, size))
        self._close()

    def _expire(self) -> None:
        self._timer = None
        self._push(_Tick.EXPIRE)

    def _finish(self, outcome: Outcome) -> None:
        elapsed = self._loop.time() - self._started
        ip = self.client[0]
        event = transfer_event(time.time(), ip, self.request, self._session, outcome)
        log_outcome(peer(self.client), event, elapsed)
        self._record(event)
        self._close()

    def _close(self) -> None:
        self._done = True
        self._events.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        else:
            self._socket_closed = True
        if self._reading is None:
            self._release_file()  # else when the read in flight returns
        self._ended(self)

    def _release_file(self) -> None:
        close_source(self._opened)
        self._file = None
        self._maybe_lost()

    def _maybe_lost(self) -> None:
        if self._socket_closed and self._file is None and not self.lost.done():
            self.lost.set_result(None)


def close_source(opened: Opened) -> None:
    """Close a transfer's file descriptor, if it has one (calling it again does nothing)."""
    if isinstance(opened.source, FileSource):
        opened.source.close()

"""Sans-IO TFTP read session: packets and timer expiries with `now` in, datagrams and deadlines out.

Option negotiation, windows (RFC 7440), retransmission and the end of a transfer; no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from pxelab.tftp.packet import (
    Ack,
    ErrorCode,
    ErrorPacket,
    OptionAck,
    Packet,
    ReadRequest,
    build,
    build_data,
)

__all__ = [
    "DEFAULT_BLKSIZE",
    "MAX_BLKSIZE",
    "MAX_TIMEOUT",
    "MAX_WINDOWSIZE",
    "MIN_BLKSIZE",
    "MIN_TIMEOUT",
    "MIN_WINDOWSIZE",
    "MODES",
    "Ending",
    "MemorySource",
    "Negotiated",
    "Outcome",
    "ReadSession",
    "SessionConfig",
    "Source",
    "Step",
    "check_request",
    "negotiate",
    "to_netascii",
]

DEFAULT_BLKSIZE = 512
"""Block size when the client does not negotiate one (RFC 1350)."""
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464
"""Valid blksize values (RFC 2348)."""
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255
"""Valid timeout values in seconds (RFC 2349)."""
MIN_WINDOWSIZE, MAX_WINDOWSIZE = 1, 65535
"""Valid windowsize values (RFC 7440)."""
MODES = ("octet", "netascii")
"""Transfer modes served; "mail" is obsolete (RFC 1350) and refused."""

_MAX_DIGITS = 10
"""Longer option values are not numbers we could grant anyway."""


@dataclass(frozen=True)
class SessionConfig:
    """Server-side limits and defaults for read sessions."""

    timeout: float = 1.0
    """Seconds before a retransmission when the client does not negotiate `timeout`."""
    retries: int = 5
    """Retransmissions of one window (or of the OACK) before the server gives up."""
    max_blksize: int = MAX_BLKSIZE
    """Largest blksize granted; the adapter lowers it to the path MTU minus 32."""
    max_windowsize: int = 64
    """Largest windowsize granted (RFC 7440 allows up to 65535)."""
    backoff: float = 2.0
    """Each retransmission of the same window waits this many times longer than the last one."""
    max_delay: float = 8.0
    """Longest wait between retransmissions when the client negotiated no `timeout`."""
    idle_limit: float = 120.0
    """A session with no progress (no new ACK) for this many seconds ends, whatever it receives."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, not {self.retries}")
        if self.backoff < 1:
            raise ValueError(f"backoff must be >= 1, not {self.backoff}")
        if self.max_delay <= 0:
            raise ValueError(f"max_delay must be positive, not {self.max_delay}")
        if self.idle_limit <= 0:
            raise ValueError(f"idle_limit must be positive, not {self.idle_limit}")
        if not MIN_BLKSIZE <= self.max_blksize <= MAX_BLKSIZE:
            raise ValueError(f"max_blksize must be in {MIN_BLKSIZE}..{MAX_BLKSIZE}")
        if not MIN_WINDOWSIZE <= self.max_windowsize <= MAX_WINDOWSIZE:
            raise ValueError(f"max_windowsize must be in {MIN_WINDOWSIZE}..{MAX_WINDOWSIZE}")


@dataclass(frozen=True)
class Negotiated:
    """The transfer parameters agreed with the client."""

    blksize: int
    """Payload bytes per DATA packet."""
    windowsize: int
    """DATA packets sent before waiting for an ACK."""
    timeout: float
    """Seconds before a retransmission."""
    oack: dict[str, str] = field(default_factory=dict)
    """Options to acknowledge in an OACK, in request order; empty means send no OACK."""


def negotiate(options: Mapping[str, str], size: int, config: SessionConfig) -> Negotiated:
    """Grant the recognised options of an RRQ; ignore unknown or invalid ones (RFC 2347)."""
    blksize, windowsize, timeout = DEFAULT_BLKSIZE, 1, config.timeout
    oack: dict[str, str] = {}
    for name, value in options.items():
        number = _number(value)
        if name == "blksize" and number is not None and number >= MIN_BLKSIZE:
            blksize = min(number, MAX_BLKSIZE, config.max_blksize)
            oack[name] = str(blksize)
        elif name == "windowsize" and number is not None and number >= MIN_WINDOWSIZE:
            windowsize = min(number, MAX_WINDOWSIZE, config.max_windowsize)
            oack[name] = str(windowsize)
        elif name == "timeout" and number is not None and MIN_TIMEOUT <= number <= MAX_TIMEOUT:
            timeout = float(number)
            oack[name] = str(number)
        elif name == "tsize":
            oack[name] = str(size)
    return Negotiated(blksize, windowsize, timeout, oack)


def _number(value: str) -> int | None:
    if value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        return int(value)
    return None


def check_request(request: ReadRequest) -> ErrorPacket | None:
    """Return the ERROR to answer an RRQ whose mode cannot be served, else None."""
    if request.mode not in MODES:
        return ErrorPacket(ErrorCode.ILLEGAL_OPERATION, f"unsupported mode {request.mode!r}")
    return None


def to_netascii(data: bytes) -> bytes:
    """Convert file content for netascii mode: LF -> CR LF, CR -> CR NUL (RFC 764)."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


class Source(Protocol):
    """What a read session needs from the file: its size and its bytes by offset."""

    @property
    def size(self) -> int:
        """File size in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`; fewer only at the end of the file."""
        ...


@dataclass(frozen=True)
class MemorySource:
    """A file already read into memory."""

    data: bytes
    """The whole content."""

    @property
    def size(self) -> int:
        """File size in bytes."""
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`."""
        return self.data[offset : offset + length]


class Ending(StrEnum):
    """How a read session ended."""

    COMPLETED = "completed"
    """The client acknowledged the last block."""
    ABORTED_AFTER_OACK = "aborted after OACK"
    """The client answered the OACK with an ERROR (code 8 is normal: it only wanted tsize)."""
    CLIENT_ERROR = "client error"
    """The client sent an ERROR during the transfer."""
    TIMED_OUT = "timed out"
    """The client stopped answering; retransmissions ran out."""
    IDLE = "idle"
    """No progress for `idle_limit` seconds (a client that only repeats old ACKs)."""
    ILLEGAL_OPERATION = "illegal operation"
    """The client sent a packet that has no place in a read transfer; it got ERROR 4."""


@dataclass(frozen=True)
class Outcome:
    """The end of a read session, for the log."""

    ending: Ending
    """How it ended."""
    bytes_acked: int
    """File bytes the client acknowledged."""
    error: ErrorPacket | None = None
    """The ERROR the client sent, or the one sent to it; None otherwise."""


@dataclass(frozen=True)
class Step:
    """What the adapter does after feeding one event to a session."""

    send: tuple[bytes, ...] = ()
    """Datagrams to send to the client, in order."""
    deadline: float | None = None
    """When to call `expire` next (the clock of `now`); None once the session has ended."""
    outcome: Outcome | None = None
    """Set on the one step that ends the session."""


class ReadSession:
    """One RRQ being served: call `start` once, then `receive` and `expire` until an outcome."""

    def __init__(
        self, source: Source, options: Mapping[str, str], config: SessionConfig | None = None
    ) -> None:
        self._config = config or SessionConfig()
        self._source = source
        self.negotiated = negotiate(options, source.size, self._config)
        """Parameters agreed with the client."""
        self.size = source.size
        """Bytes in the file (after netascii conversion, if any)."""
        self._last = source.size // self.negotiated.blksize + 1
        self._acked = 0
        self._sent = 0
        self._awaiting_oack_ack = bool(self.negotiated.oack)
        self._tries = 0
        self._deadline: float | None = None
        self._idle_at = 0.0
        self.outcome: Outcome | None = None
        """Set once the session has ended."""

    @property
    def bytes_acked(self) -> int:
        """File bytes the client has acknowledged so far."""
        return min(self._acked * self.negotiated.blksize, self.size)

    def span(self) -> tuple[int, int]:
        """(offset, length) of the source bytes the next `start`, `receive` or `expire` may read.

        At most two windows: the unacknowledged blocks and a window after the last one sent.
        An adapter reading files off the event loop has these bytes ready before each call.
        """
        if self.outcome is not None:
            return (0, 0)
        blksize = self.negotiated.blksize
        offset = min(self._acked * blksize, self.size)
        end = min((self._sent + self.negotiated.windowsize) * blksize, self.size)
        return (offset, end - offset)

    def start(self, now: float) -> Step:
        """Send the OACK, or the first window when no option was granted."""
        if self._deadline is not None or self.outcome is not None:
            raise RuntimeError("ReadSession.start() called twice")
        if self._awaiting_oack_ack:
            self._progress(now)
            return Step((self._oack(),), self._deadline)
        return self._send_window(1, now)

    def receive(self, packet: Packet, now: float) -> Step:
        """Handle one packet from the client (already parsed)."""
        if self.outcome is not None:
            return Step()
        if isinstance(packet, Ack):
            return self._receive_ack(packet.block, now)
        if isinstance(packet, ErrorPacket):
            ending = Ending.ABORTED_AFTER_OACK if self._awaiting_oack_ack else Ending.CLIENT_ERROR
            return self._end(ending, packet)
        error = ErrorPacket(
            ErrorCode.ILLEGAL_OPERATION, f"unexpected {type(packet).__name__} in a read transfer"
        )
        return self._end(Ending.ILLEGAL_OPERATION, error, send=(build(error),))

    def expire(self, now: float) -> Step:
        """Handle the timer: retransmit what is unacknowledged (backing off), or give up."""
        if self.outcome is not None:
            return Step()
        if self._deadline is None or now < self._deadline:
            return Step(deadline=self._deadline)
        if now >= self._idle_at:
            return self._end(Ending.IDLE, None)
        if self._tries >= self._config.retries:
            return self._end(Ending.TIMED_OUT, None)
        self._tries += 1
        self._arm(now)
        if self._awaiting_oack_ack:
            return Step((self._oack(),), self._deadline)
        return Step(self._blocks(self._acked + 1, self._sent), self._deadline)

    def _receive_ack(self, block: int, now: float) -> Step:
        if self._awaiting_oack_ack:
            if block != 0:
                return Step(deadline=self._deadline)
            self._awaiting_oack_ack = False
            return self._send_window(1, now)
        # Map the 16-bit number onto the blocks in flight: acked .. sent (a window < 65536).
        absolute = self._acked + ((block - self._acked) & 0xFFFF)
        if absolute > self._sent or absolute == self._acked:
            # Old or duplicate ACK: never answer it with data (Sorcerer's Apprentice).
            return Step(deadline=self._deadline)
        self._acked = absolute
        if absolute == self._last:
            return self._end(Ending.COMPLETED, None)
        # RFC 7440: an ACK inside the window means the rest was lost; restart after it.
        return self._send_window(absolute + 1, now)

    def _send_window(self, first: int, now: float) -> Step:
        self._sent = min(first + self.negotiated.windowsize - 1, self._last)
        self._progress(now)
        return Step(self._blocks(first, self._sent), self._deadline)

    def _progress(self, now: float) -> None:
        """New data is going out: reset the retries and the idle clock, arm the first timer."""
        self._tries = 0
        self._idle_at = now + self._config.idle_limit
        self._arm(now)

    def _arm(self, now: float) -> None:
        """Deadline of the next retransmission, or of going idle.

        A timeout the client negotiated is kept as it is (RFC 2349: it is the retransmission
        interval); the server's own one grows by `backoff` per retry, up to `max_delay`.
        """
        timeout = self.negotiated.timeout
        if "timeout" in self.negotiated.oack:
            delay = timeout
        else:
            delay = min(timeout * self._config.backoff**self._tries, self._config.max_delay)
        self._deadline = min(now + delay, self._idle_at)

    def _blocks(self, first: int, last: int) -> tuple[bytes, ...]:
        blksize = self.negotiated.blksize
        read = self._source.read
        return tuple(
            build_data(n, read((n - 1) * blksize, blksize)) for n in range(first, last + 1)
        )

    def _oack(self) -> bytes:
        return build(OptionAck(self.negotiated.oack))

    def _end(self, ending: Ending, error: ErrorPacket | None, send: tuple[bytes, ...] = ()) -> Step:
        self.outcome = Outcome(ending, self.bytes_acked, error)
        self._deadline = None
        return Step(send, None, self.outcome)

"""Sans-IO decisions on TFTP requests: which get a transfer, which ERROR answers what, blksize by MTU.

The adapter (`server`) passes values in (the packet, transfers in flight, the path MTU, what went
wrong opening a file) and does what the returned decision says; no sockets, clocks or files here.
"""

from __future__ import annotations

import dataclasses
import errno
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from pxelab.paths import NotAFileError, PathRefused
from pxelab.tftp.packet import ErrorCode, ErrorPacket, Packet, ReadRequest, WriteRequest
from pxelab.tftp.session import MIN_BLKSIZE, SessionConfig, check_request

__all__ = [
    "HEADERS",
    "MAX_PER_CLIENT",
    "MAX_SESSIONS",
    "START_FAILED",
    "Decision",
    "InFlight",
    "Limits",
    "Refusal",
    "Slots",
    "Verdict",
    "clamp_to_mtu",
    "decide",
    "malformed",
    "refusal",
]

Address = tuple[str, int]

MAX_SESSIONS = 512
"""Default cap on transfers in flight (requests being opened count too)."""
MAX_PER_CLIENT = 16
"""Default cap on transfers in flight from one client IP address."""
HEADERS = 20 + 8 + 4
"""IPv4 + UDP + TFTP DATA header bytes: blksize + HEADERS must fit in the path MTU."""

_REQUEST_OPCODES = (b"\0\1", b"\0\2")
"""First bytes of an RRQ or WRQ: a malformed one of these gets an ERROR back, other junk not."""


@dataclass(frozen=True)
class Limits:
    """The caps on transfers in flight (`tftp_max_sessions`, `tftp_max_per_client`)."""

    max_sessions: int = MAX_SESSIONS
    """Transfers in flight at most; more requests are dropped (clients retry)."""
    max_per_client: int = MAX_PER_CLIENT
    """Transfers in flight from one client IP at most."""

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.max_per_client < 1:
            raise ValueError(
                f"TFTP caps must be >= 1, not {self.max_sessions} and {self.max_per_client}"
            )


@dataclass(frozen=True)
class InFlight:
    """What is in flight when a request arrives, as far as the request's client is concerned."""

    total: int
    """Requests being opened plus transfers running, from every client."""
    from_ip: int
    """Those from the client's IP address (any port)."""
    same_client: bool
    """True when one is from this very address and port: the request is a repeat."""


class Verdict(StrEnum):
    """What to do with a datagram to the well-known port."""

    SERVE = "serve"
    """Take a slot and open the file."""
    REPEATED = "repeated"
    """A repeated RRQ (our first answer was lost): the transfer already running answers it."""
    BUSY = "busy"
    """A cap is reached: drop it without an answer and count it; the client retries."""
    REFUSED = "refused"
    """Answer with `Decision.error` and log `Decision.reason`."""
    IGNORED = "ignored"
    """Not a request (a late packet of a finished exchange, junk): no answer."""


@dataclass(frozen=True)
class Decision:
    """The answer to one datagram on the well-known port."""

    verdict: Verdict
    """What to do."""
    reason: str = ""
    """Why, in words, for the log line ("" for SERVE and for a refusal its ERROR explains)."""
    error: ErrorPacket | None = None
    """The ERROR to send back (REFUSED only)."""


def decide(packet: Packet, client: Address, in_flight: InFlight, limits: Limits) -> Decision:
    """Admit, refuse or ignore a parsed datagram `client` sent to the well-known port."""
    if isinstance(packet, WriteRequest):
        error = ErrorPacket(ErrorCode.ACCESS_VIOLATION, "read-only server")
        return Decision(Verdict.REFUSED, "", error)
    if not isinstance(packet, ReadRequest):
        # Late packets of a finished exchange land here: tftp-hpa ACKs the ERROR it got.
        return Decision(Verdict.IGNORED, f"{type(packet).__name__} to the listener")
    if in_flight.same_client:
        return Decision(Verdict.REPEATED, "repeated RRQ")
    if in_flight.total >= limits.max_sessions:
        why = f"dropped, {in_flight.total} transfers in flight (tftp_max_sessions)"
        return Decision(Verdict.BUSY, why)
    if in_flight.from_ip >= limits.max_per_client:
        ip = client[0]
        why = f"dropped, {in_flight.from_ip} transfers in flight for {ip} (tftp_max_per_client)"
        return Decision(Verdict.BUSY, why)
    bad_mode = check_request(packet)
    if bad_mode is not None:
        return Decision(Verdict.REFUSED, "", bad_mode)
    return Decision(Verdict.SERVE)


def malformed(data: bytes) -> Decision:
    """A datagram that does not parse: answer ERROR 4 if it meant to be a request, else nothing."""
    if data[:2] in _REQUEST_OPCODES:
        error = ErrorPacket(ErrorCode.ILLEGAL_OPERATION, "malformed request")
        return Decision(Verdict.REFUSED, "malformed request", error)
    return Decision(Verdict.IGNORED, "malformed datagram")


@dataclass(frozen=True)
class Refusal:
    """An RRQ that could not be opened: the ERROR for the client and what the timeline says."""

    error: ErrorPacket
    """What the client gets."""
    reason: str = ""
    """Why, beyond what the ERROR says ("" when it says all)."""
    policy: bool = False
    """True when the path itself was refused (outside the root, hidden, a symlink loop)."""


def refusal(exc: Exception) -> Refusal | None:
    """Map what went wrong opening a requested file to its ERROR; None for a bug (not an OSError)."""
    if isinstance(exc, PathRefused):
        return Refusal(ErrorPacket(ErrorCode.ACCESS_VIOLATION, str(exc)), str(exc), policy=True)
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return Refusal(ErrorPacket(ErrorCode.FILE_NOT_FOUND, "file not found"))
    if isinstance(exc, PermissionError | NotAFileError):
        return Refusal(ErrorPacket(ErrorCode.ACCESS_VIOLATION, "access violation"), str(exc))
    if isinstance(exc, OSError):
        if exc.errno == errno.ELOOP:  # a symlink loop (or a symlink where none may be)
            error = ErrorPacket(ErrorCode.ACCESS_VIOLATION, "access violation")
            return Refusal(error, "symlink loop", policy=True)
        return Refusal(ErrorPacket(ErrorCode.NOT_DEFINED, exc.strerror or type(exc).__name__))
    return None


START_FAILED = ErrorPacket(ErrorCode.NOT_DEFINED, "server cannot start a transfer")
"""The answer when no transfer socket can be opened for a request."""


def clamp_to_mtu(config: SessionConfig, mtu: int | None) -> SessionConfig:
    """Lower `max_blksize` so a DATA packet fits the path MTU (unknown MTU: unchanged)."""
    if mtu is None or mtu - HEADERS >= config.max_blksize:
        return config
    return dataclasses.replace(config, max_blksize=max(MIN_BLKSIZE, mtu - HEADERS))


class Slots:
    """Who has a transfer in flight (or a request being opened): the adapter's bookkeeping."""

    def __init__(self) -> None:
        self._clients: set[Address] = set()
        self._per_ip: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._clients)

    def in_flight(self, client: Address) -> InFlight:
        """What `decide` needs to know about a request from `client`."""
        return InFlight(len(self._clients), self._per_ip[client[0]], client in self._clients)

    def take(self, client: Address) -> None:
        """Count a request that is being served (after Verdict.SERVE)."""
        if client not in self._clients:
            self._clients.add(client)
            self._per_ip[client[0]] += 1

    def release(self, client: Address) -> None:
        """Free the client's slot; releasing one not taken does nothing."""
        if client in self._clients:
            self._clients.discard(client)
            self._per_ip[client[0]] -= 1
            if self._per_ip[client[0]] <= 0:
                del self._per_ip[client[0]]

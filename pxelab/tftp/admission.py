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
    "MAX_QUEUED",
    "MAX_SESSIONS",
    "MAX_WAIT",
    "START_FAILED",
    "Decision",
    "InFlight",
    "Limits",
    "Refusal",
    "Slots",
    "Verdict",
    "Waiting",
    "clamp_to_mtu",
    "decide",
    "malformed",
    "refusal",
]

Address = tuple[str, int]

MAX_SESSIONS = 2048
"""Default cap on transfers in flight (requests being opened count too)."""
MAX_PER_CLIENT = 16
"""Default cap on transfers in flight from one client IP address."""
MAX_QUEUED = 1024
"""Default number of requests over a cap that wait for a slot; more are dropped."""
MAX_WAIT = 30.0
"""Seconds a request waits for a slot at most (its client has long retried or given up)."""
HEADERS = 20 + 8 + 4
"""IPv4 + UDP + TFTP DATA header bytes: blksize + HEADERS must fit in the path MTU."""

_REQUEST_OPCODES = (b"\0\1", b"\0\2")
"""First bytes of an RRQ or WRQ: a malformed one of these gets an ERROR back, other junk not."""


@dataclass(frozen=True)
class Limits:
    """The caps on transfers in flight (`tftp_max_sessions`, `tftp_max_per_client`)."""

    max_sessions: int = MAX_SESSIONS
    """Transfers in flight at most; more requests wait for a slot."""
    max_per_client: int = MAX_PER_CLIENT
    """Transfers in flight from one client IP at most; more requests from it wait for a slot."""
    max_queued: int = MAX_QUEUED
    """Requests waiting for a slot at most; more are dropped (the client retries)."""
    max_wait: float = MAX_WAIT
    """Seconds a request waits for a slot at most; then it is dropped."""

    def __post_init__(self) -> None:
        if self.max_sessions < 1 or self.max_per_client < 1:
            raise ValueError(
                f"TFTP caps must be >= 1, not {self.max_sessions} and {self.max_per_client}"
            )
        if self.max_queued < 0 or self.max_wait < 0:
            raise ValueError(
                f"TFTP wait queue: max_queued and max_wait must be >= 0, not "
                f"{self.max_queued} and {self.max_wait}"
            )


@dataclass(frozen=True)
class InFlight:
    """What is in flight when a request arrives, as far as the request's client is concerned."""

    total: int
    """Requests being opened plus transfers running, from every client."""
    from_ip: int
    """Those from the client's IP address (any port)."""
    same_client: bool
    """True when one (or a waiting request) is from this very address and port: a repeat."""
    queued: int = 0
    """Requests over a cap waiting for a slot, from every client."""


class Verdict(StrEnum):
    """What to do with a datagram to the well-known port."""

    SERVE = "serve"
    """Take a slot and open the file."""
    REPEATED = "repeated"
    """A repeated RRQ (our first answer was lost, or it waits): the first one is answered."""
    QUEUED = "queued"
    """A cap is reached: the request waits for a slot (`Slots.queue`), first come first served."""
    BUSY = "busy"
    """A cap is reached and the wait queue is full: drop it and count it; the client retries."""
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
    cap = ""
    if in_flight.total >= limits.max_sessions:
        cap = f"{in_flight.total} transfers in flight (tftp_max_sessions)"
    elif in_flight.from_ip >= limits.max_per_client:
        ip = client[0]
        cap = f"{in_flight.from_ip} transfers in flight for {ip} (tftp_max_per_client)"
    if cap and in_flight.queued >= limits.max_queued:
        return Decision(Verdict.BUSY, f"dropped, {cap}, {in_flight.queued} waiting")
    bad_mode = check_request(packet)
    if bad_mode is not None:
        return Decision(Verdict.REFUSED, "", bad_mode)
    if cap:
        return Decision(Verdict.QUEUED, f"waits, {cap}")
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


@dataclass(frozen=True)
class Waiting:
    """A request over a cap, waiting for a slot."""

    client: Address
    """Who asked."""
    request: ReadRequest
    """What it asked for."""
    local: str | None
    """The address it was sent to, if known (the answer comes from there)."""
    since: float
    """When it arrived (the adapter's clock)."""


class Slots:
    """Who has a transfer in flight (or a request being opened), and who waits for a slot."""

    def __init__(self) -> None:
        self._clients: set[Address] = set()
        self._per_ip: Counter[str] = Counter()
        self._waiting: dict[Address, Waiting] = {}  # in arrival order

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiting)

    def in_flight(self, client: Address) -> InFlight:
        """What `decide` needs to know about a request from `client`."""
        same = client in self._clients or client in self._waiting
        return InFlight(len(self._clients), self._per_ip[client[0]], same, len(self._waiting))

    def take(self, client: Address) -> None:
        """Count a request that is being served (after Verdict.SERVE)."""
        if client not in self._clients:
            self._clients.add(client)
            self._per_ip[client[0]] += 1

    def queue(self, waiting: Waiting) -> None:
        """Keep a request until a slot frees (after Verdict.QUEUED)."""
        self._waiting.setdefault(waiting.client, waiting)

    def release(self, client: Address) -> None:
        """Free the client's slot; releasing one not taken does nothing."""
        if client in self._clients:
            self._clients.discard(client)
            self._per_ip[client[0]] -= 1
            if self._per_ip[client[0]] <= 0:
                del self._per_ip[client[0]]

    def admit(self, limits: Limits, now: float) -> tuple[list[Waiting], list[Waiting]]:
        """Waiting requests that fit under the caps now, in arrival order, each with its slot
        taken; and those that waited longer than `max_wait` (dropped)."""
        ready: list[Waiting] = []
        expired: list[Waiting] = []
        for client, waiting in list(self._waiting.items()):
            if len(self._clients) >= limits.max_sessions:
                break
            if now - waiting.since > limits.max_wait:
                expired.append(self._waiting.pop(client))
            elif self._per_ip[client[0]] < limits.max_per_client:
                ready.append(self._waiting.pop(client))
                self.take(client)
        return ready, expired

    def clear_waiting(self) -> list[Waiting]:
        """Forget every waiting request (the server is closing)."""
        waiting = list(self._waiting.values())
        self._waiting.clear()
        return waiting

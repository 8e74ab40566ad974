"""The TFTP admission core: caps, repeated requests, refusals, error codes and the MTU clamp."""

from __future__ import annotations

import errno

import pytest

from pxelab.paths import NotAFileError, PathRefused
from pxelab.tftp.admission import (
    HEADERS,
    START_FAILED,
    InFlight,
    Limits,
    Slots,
    Verdict,
    Waiting,
    clamp_to_mtu,
    decide,
    malformed,
    refusal,
)
from pxelab.tftp.packet import (
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    OptionAck,
    Packet,
    ReadRequest,
    WriteRequest,
)
from pxelab.tftp.session import MIN_BLKSIZE, SessionConfig

CLIENT = ("10.0.0.5", 2000)
LIMITS = Limits(max_sessions=4, max_per_client=2)
RRQ = ReadRequest("ipxe.efi", "octet")
IDLE = InFlight(total=0, from_ip=0, same_client=False)


@pytest.mark.parametrize(
    ("packet", "in_flight", "verdict", "reason", "error"),
    [
        (RRQ, IDLE, Verdict.SERVE, "", None),
        (ReadRequest("f", "netascii"), IDLE, Verdict.SERVE, "", None),
        (RRQ, InFlight(3, 1, False), Verdict.SERVE, "", None),
        (RRQ, InFlight(1, 1, True), Verdict.REPEATED, "repeated RRQ", None),
        # a repeat is answered by its transfer even when the caps are reached
        (RRQ, InFlight(4, 2, True), Verdict.REPEATED, "repeated RRQ", None),
        # over a cap, a request waits for a slot while the wait queue has room
        (
            RRQ,
            InFlight(4, 0, False),
            Verdict.QUEUED,
            "waits, 4 transfers in flight (tftp_max_sessions)",
            None,
        ),
        (
            RRQ,
            InFlight(2, 2, False, queued=1023),
            Verdict.QUEUED,
            "waits, 2 transfers in flight for 10.0.0.5 (tftp_max_per_client)",
            None,
        ),
        # ... and is dropped once the queue is full
        (
            RRQ,
            InFlight(4, 0, False, queued=1024),
            Verdict.BUSY,
            "dropped, 4 transfers in flight (tftp_max_sessions), 1024 waiting",
            None,
        ),
        (
            RRQ,
            InFlight(2, 2, False, queued=1024),
            Verdict.BUSY,
            "dropped, 2 transfers in flight for 10.0.0.5 (tftp_max_per_client), 1024 waiting",
            None,
        ),
        # a full server drops whatever it is asked; with room to wait, a bad mode is refused
        (
            ReadRequest("f", "mail"),
            InFlight(4, 0, False, queued=1024),
            Verdict.BUSY,
            "dropped, 4",
            None,
        ),
        (
            ReadRequest("f", "mail"),
            InFlight(4, 0, False),
            Verdict.REFUSED,
            "",
            ErrorPacket(ErrorCode.ILLEGAL_OPERATION, "unsupported mode 'mail'"),
        ),
        # a request below the caps does not wait behind those that do (other IPs)
        (RRQ, InFlight(3, 1, False, queued=5), Verdict.SERVE, "", None),
        (
            ReadRequest("f", "mail"),
            IDLE,
            Verdict.REFUSED,
            "",
            ErrorPacket(ErrorCode.ILLEGAL_OPERATION, "unsupported mode 'mail'"),
        ),
        (
            WriteRequest("up.bin", "octet"),
            IDLE,
            Verdict.REFUSED,
            "",
            ErrorPacket(ErrorCode.ACCESS_VIOLATION, "read-only server"),
        ),
        # an upload is refused even when busy: it never takes a slot
        (
            WriteRequest("up.bin", "octet"),
            InFlight(4, 2, False),
            Verdict.REFUSED,
            "",
            ErrorPacket(ErrorCode.ACCESS_VIOLATION, "read-only server"),
        ),
        (Ack(3), IDLE, Verdict.IGNORED, "Ack to the listener", None),
        (Data(1, b"x"), IDLE, Verdict.IGNORED, "Data to the listener", None),
        (ErrorPacket(ErrorCode.NOT_DEFINED, "x"), IDLE, Verdict.IGNORED, "ErrorPacket", None),
        (OptionAck({"tsize": "1"}), IDLE, Verdict.IGNORED, "OptionAck", None),
    ],
)
def test_decide(
    packet: Packet,
    in_flight: InFlight,
    verdict: Verdict,
    reason: str,
    error: ErrorPacket | None,
) -> None:
    decision = decide(packet, CLIENT, in_flight, LIMITS)
    assert decision.verdict is verdict
    assert decision.reason.startswith(reason)
    assert decision.error == error


@pytest.mark.parametrize(
    ("data", "verdict", "error"),
    [
        (b"\0\1no-terminator", Verdict.REFUSED, ErrorCode.ILLEGAL_OPERATION),
        (b"\0\2", Verdict.REFUSED, ErrorCode.ILLEGAL_OPERATION),
        (b"\0\4", Verdict.IGNORED, None),
        (b"\0\7junk", Verdict.IGNORED, None),
        (b"", Verdict.IGNORED, None),
        (b"\1", Verdict.IGNORED, None),
    ],
)
def test_malformed(data: bytes, verdict: Verdict, error: ErrorCode | None) -> None:
    decision = malformed(data)
    assert decision.verdict is verdict
    if error is None:
        assert decision.error is None
    else:
        assert decision.error == ErrorPacket(error, "malformed request")


@pytest.mark.parametrize(
    ("exc", "error", "reason", "policy"),
    [
        (
            PathRefused("filename has a '..' component"),
            ErrorPacket(ErrorCode.ACCESS_VIOLATION, "filename has a '..' component"),
            "filename has a '..' component",
            True,
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory"),
            ErrorPacket(ErrorCode.FILE_NOT_FOUND, "file not found"),
            "",
            False,
        ),
        (
            NotADirectoryError(errno.ENOTDIR, "Not a directory"),
            ErrorPacket(ErrorCode.FILE_NOT_FOUND, "file not found"),
            "",
            False,
        ),
        (
            PermissionError(errno.EACCES, "Permission denied"),
            ErrorPacket(ErrorCode.ACCESS_VIOLATION, "access violation"),
            "[Errno 13] Permission denied",
            False,
        ),
        (
            NotAFileError(errno.EACCES, "not a regular file"),
            ErrorPacket(ErrorCode.ACCESS_VIOLATION, "access violation"),
            "[Errno 13] not a regular file",
            False,
        ),
        (
            OSError(errno.ELOOP, "Too many levels of symbolic links"),
            ErrorPacket(ErrorCode.ACCESS_VIOLATION, "access violation"),
            "symlink loop",
            True,
        ),
        (
            OSError(errno.EIO, "Input/output error"),
            ErrorPacket(ErrorCode.NOT_DEFINED, "Input/output error"),
            "",
            False,
        ),
        (OSError("no errno"), ErrorPacket(ErrorCode.NOT_DEFINED, "OSError"), "", False),
    ],
)
def test_refusal_maps_errors_to_codes(
    exc: Exception, error: ErrorPacket, reason: str, policy: bool
) -> None:
    refused = refusal(exc)
    assert refused is not None
    assert refused.error == error
    assert refused.reason == reason
    assert refused.policy is policy


@pytest.mark.parametrize("exc", [ValueError("bug"), KeyError("x"), RuntimeError("y")])
def test_refusal_leaves_bugs_alone(exc: Exception) -> None:
    assert refusal(exc) is None


def test_start_failed_is_error_0() -> None:
    assert ErrorPacket(ErrorCode.NOT_DEFINED, "server cannot start a transfer") == START_FAILED


@pytest.mark.parametrize(
    ("max_blksize", "mtu", "clamped"),
    [
        (65464, None, 65464),  # unknown path MTU: unchanged
        (65464, 1500, 1500 - HEADERS),  # Ethernet: 1468
        (65464, 9000, 9000 - HEADERS),  # jumbo frames
        (65464, 65536, 65464),  # loopback: the RFC limit stays
        (1024, 1500, 1024),  # the server's own cap is already lower
        (65464, 20, MIN_BLKSIZE),  # an absurd MTU: never below the RFC minimum
        (65464, HEADERS + 1468, 1468),
    ],
)
def test_clamp_to_mtu(max_blksize: int, mtu: int | None, clamped: int) -> None:
    config = SessionConfig(max_blksize=max_blksize, max_windowsize=8)
    result = clamp_to_mtu(config, mtu)
    assert result.max_blksize == clamped
    assert result.max_windowsize == 8  # nothing else changes
    if clamped == max_blksize:
        assert result is config


@pytest.mark.parametrize(("sessions", "per_client"), [(0, 1), (1, 0), (-1, 5)])
def test_limits_must_be_positive(sessions: int, per_client: int) -> None:
    with pytest.raises(ValueError, match="caps must be >= 1"):
        Limits(sessions, per_client)


@pytest.mark.parametrize(("queued", "wait"), [(-1, 30.0), (10, -1.0)])
def test_wait_queue_limits_must_not_be_negative(queued: int, wait: float) -> None:
    with pytest.raises(ValueError, match="max_queued and max_wait must be >= 0"):
        Limits(4, 2, queued, wait)


def test_slots_count_clients_and_ips() -> None:
    slots = Slots()
    a1, a2, b = ("10.0.0.1", 1000), ("10.0.0.1", 1001), ("10.0.0.2", 1000)
    assert slots.in_flight(a1) == InFlight(0, 0, False, 0)
    slots.take(a1)
    slots.take(a2)
    slots.take(b)
    slots.take(a1)  # taking twice counts once
    assert len(slots) == 3
    assert slots.in_flight(a1) == InFlight(3, 2, True)
    assert slots.in_flight(("10.0.0.1", 1002)) == InFlight(3, 2, False)
    assert slots.in_flight(("10.0.0.3", 1)) == InFlight(3, 0, False)
    slots.release(a1)
    slots.release(a1)  # releasing twice frees once
    assert slots.in_flight(a2) == InFlight(2, 1, True)
    slots.release(a2)
    slots.release(b)
    slots.release(("10.9.9.9", 9))  # never taken
    assert len(slots) == 0
    assert slots.in_flight(a1) == InFlight(0, 0, False)


def test_slots_and_decide_enforce_the_caps_together() -> None:
    """The adapter's loop with no wait queue: take a slot on SERVE; the caps hold, the rest drop."""
    slots, limits = Slots(), Limits(max_sessions=3, max_per_client=2, max_queued=0)
    verdicts = []
    for client in [("10.0.0.1", p) for p in (1, 2, 3)] + [("10.0.0.2", 1), ("10.0.0.3", 1)]:
        decision = decide(RRQ, client, slots.in_flight(client), limits)
        if decision.verdict is Verdict.SERVE:
            slots.take(client)
        verdicts.append(decision.verdict)
    assert verdicts == [Verdict.SERVE, Verdict.SERVE, Verdict.BUSY, Verdict.SERVE, Verdict.BUSY]
    assert len(slots) == 3


def test_requests_over_the_caps_wait_and_are_served_in_order() -> None:
    """Many machines behind one address: none is dropped, each gets a slot as one frees."""
    slots, limits = Slots(), Limits(max_sessions=3, max_per_client=2)
    nat = [("10.0.0.1", port) for port in range(1, 7)]
    other = ("10.0.0.2", 1)
    verdicts = []
    for now, client in enumerate([*nat, other]):
        decision = decide(RRQ, client, slots.in_flight(client), limits)
        verdicts.append(decision.verdict)
        if decision.verdict is Verdict.SERVE:
            slots.take(client)
        elif decision.verdict is Verdict.QUEUED:
            slots.queue(Waiting(client, RRQ, None, float(now)))
    assert verdicts == [Verdict.SERVE] * 2 + [Verdict.QUEUED] * 4 + [Verdict.SERVE]
    assert (len(slots), slots.waiting) == (3, 4)
    # a repeat of a waiting request is not queued twice
    assert decide(RRQ, nat[2], slots.in_flight(nat[2]), limits).verdict is Verdict.REPEATED
    # nothing fits while every slot is taken
    assert slots.admit(limits, 10.0) == ([], [])
    slots.release(other)  # a global slot frees, but 10.0.0.1 is at its own cap
    assert slots.admit(limits, 10.0) == ([], [])
    slots.release(nat[0])
    ready, expired = slots.admit(limits, 10.0)
    assert [w.client for w in ready] == [nat[2]] and expired == []
    slots.release(nat[1])
    assert [w.client for w in slots.admit(limits, 10.0)[0]] == [nat[3]]
    assert slots.in_flight(nat[3]) == InFlight(2, 2, True, 2)


def test_a_request_that_waited_too_long_is_dropped_not_served() -> None:
    slots, limits = Slots(), Limits(max_sessions=1, max_per_client=1, max_wait=5.0)
    slots.take(("10.0.0.1", 1))
    old, fresh = ("10.0.0.2", 1), ("10.0.0.3", 1)
    slots.queue(Waiting(old, RRQ, "10.0.0.254", 0.0))
    slots.queue(Waiting(fresh, RRQ, None, 4.0))
    slots.release(("10.0.0.1", 1))
    ready, expired = slots.admit(limits, 6.0)
    assert [w.client for w in expired] == [old]
    assert [(w.client, w.local) for w in ready] == [(fresh, None)]
    assert slots.waiting == 0
    assert slots.in_flight(fresh) == InFlight(1, 1, True, 0)


def test_closing_forgets_the_waiting_requests() -> None:
    slots = Slots()
    slots.queue(Waiting(CLIENT, RRQ, None, 0.0))
    slots.queue(Waiting(CLIENT, RRQ, None, 1.0))  # the same client twice: kept once
    assert [w.since for w in slots.clear_waiting()] == [0.0]
    assert slots.waiting == 0
    assert slots.admit(LIMITS, 2.0) == ([], [])

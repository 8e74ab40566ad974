"""pxelab.tftp.report directly: the timeline event of each way a TFTP request ends, and its log line."""

from __future__ import annotations

import logging

import pytest

from pxelab.events import TftpOutcome
from pxelab.tftp.packet import Ack, Data, ErrorCode, ErrorPacket, ReadRequest, parse
from pxelab.tftp.report import (
    log_outcome,
    refusal_event,
    stopped_event,
    transfer_event,
    upload_refused_event,
)
from pxelab.tftp.session import Ending, MemorySource, Outcome, ReadSession, SessionConfig

IP, PEER = "10.0.0.9", "10.0.0.9:2000"
DATA = bytes(range(256)) * 10  # 2560 bytes: three blocks of 1024 (the last one 512)
OPTIONS = {"blksize": "1024", "tsize": "0", "windowsize": "2"}


def _session(options: dict[str, str]) -> ReadSession:
    return ReadSession(MemorySource(DATA), options, SessionConfig(timeout=1.0, retries=1))


def _completed() -> tuple[ReadRequest, ReadSession, Outcome]:
    request = ReadRequest("ipxe.efi", "octet", OPTIONS)
    session = _session(request.options)
    session.start(0.0)
    step = session.receive(Ack(0), 0.1)  # the OACK's ACK
    for _ in range(10):  # ACK the last block of each window until the session ends
        if session.outcome is not None:
            return request, session, session.outcome
        last = parse(step.send[-1])
        assert isinstance(last, Data), last
        step = session.receive(Ack(last.block), 0.2)
    raise AssertionError("the transfer did not end")


def test_a_completed_transfer_reports_what_was_negotiated_and_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request, session, outcome = _completed()
    assert outcome.ending is Ending.COMPLETED
    event = transfer_event(5.0, IP, request, session, outcome)
    assert (event.time, event.stage, event.ip, event.file) == (5.0, "tftp", IP, "ipxe.efi")
    assert event.outcome is TftpOutcome.COMPLETED
    assert (event.bytes_acked, event.size, event.tsize) == (len(DATA), len(DATA), len(DATA))
    assert (event.blksize, event.windowsize) == (1024, 2)
    assert (event.error_code, event.error) == (None, "")
    caplog.set_level(logging.INFO, "pxelab.tftp")
    log_outcome(PEER, event, 0.25)
    assert caplog.messages == [
        f"{PEER} RRQ 'ipxe.efi': sent 2560 bytes in 0.250 s (blksize 1024, windowsize 2)"
    ]


def test_a_size_probe_reports_the_tsize_and_the_clients_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = ReadRequest("ipxe.efi", "octet", {"tsize": "0"})
    session = _session(request.options)
    session.start(0.0)
    session.receive(ErrorPacket(ErrorCode.OPTION_NEGOTIATION, "tsize only"), 0.1)
    assert session.outcome is not None
    event = transfer_event(1.0, IP, request, session, session.outcome)
    assert event.outcome is TftpOutcome.SIZE_PROBE
    assert (event.tsize, event.error_code, event.error) == (len(DATA), 8, "tsize only")
    assert (event.bytes_acked, event.blksize, event.windowsize) == (0, 512, 1)
    caplog.set_level(logging.INFO, "pxelab.tftp")
    log_outcome(PEER, event, 0.1)
    assert caplog.messages == [
        f"{PEER} RRQ 'ipxe.efi': aborted after OACK (tsize 2560), client error 8 (tsize only)"
    ]


def test_without_tsize_asked_the_event_has_none() -> None:
    request = ReadRequest("f", "octet", {})
    session = _session({})
    event = transfer_event(0.0, IP, request, session, Outcome(Ending.TIMED_OUT, 512))
    assert event.tsize is None and event.blksize == 512 and event.windowsize == 1


ENDINGS = [
    (Ending.COMPLETED, TftpOutcome.COMPLETED, "sent 1024 bytes"),
    (Ending.ABORTED_AFTER_OACK, TftpOutcome.SIZE_PROBE, "aborted after OACK, client error"),
    (Ending.CLIENT_ERROR, TftpOutcome.CLIENT_ERROR, "client error 0 (stop) after 1024 bytes"),
    (Ending.TIMED_OUT, TftpOutcome.TIMED_OUT, "timed out, 1024 of 2560 bytes acknowledged"),
    (Ending.IDLE, TftpOutcome.IDLE, "reaped, idle with 1024 of 2560 bytes acknowledged"),
    (Ending.ILLEGAL_OPERATION, TftpOutcome.ERROR, "error 0 (stop)"),
]
"""Each way a session ends: its timeline outcome and the start of its log line's summary."""


def test_no_ending_is_left_unmapped() -> None:
    assert sorted(ending for ending, _, _ in ENDINGS) == sorted(Ending)


@pytest.mark.parametrize(("ending", "outcome", "summary"), ENDINGS)
def test_every_ending_has_its_outcome_and_log_line(
    ending: Ending, outcome: TftpOutcome, summary: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = None if ending in (Ending.COMPLETED, Ending.TIMED_OUT, Ending.IDLE) else "stop"
    packet = ErrorPacket(ErrorCode.NOT_DEFINED, error) if error else None
    request = ReadRequest("f.bin", "octet", {})
    event = transfer_event(0.0, IP, request, _session({}), Outcome(ending, 1024, packet))
    assert event.outcome is outcome
    assert event.error_code == (0 if packet else None)
    caplog.set_level(logging.INFO, "pxelab.tftp")
    log_outcome(PEER, event, 0.5)
    [line] = caplog.messages
    assert line.startswith(f"{PEER} RRQ 'f.bin': {summary}"), line


@pytest.mark.parametrize(
    ("code", "message", "policy", "outcome", "error"),
    [
        (ErrorCode.ACCESS_VIOLATION, "x has '..'", True, TftpOutcome.REFUSED, "access violation"),
        (ErrorCode.FILE_NOT_FOUND, "no such file", False, TftpOutcome.ERROR, "file not found"),
        (ErrorCode.OPTION_NEGOTIATION, "bad blksize", False, TftpOutcome.ERROR, "bad blksize"),
    ],
)
def test_refusals_say_their_code_in_words_and_why(
    code: ErrorCode, message: str, policy: bool, outcome: TftpOutcome, error: str
) -> None:
    packet = ErrorPacket(code, message)
    event = refusal_event(2.0, IP, "../x", packet, "the reason", policy=policy)
    assert (event.stage, event.ip, event.file, event.outcome) == ("tftp", IP, "../x", outcome)
    assert (event.error_code, event.error, event.reason) == (int(code), error, "the reason")
    prefix = "refused, " if policy else ""
    assert event.detail == f"../x: {prefix}error {int(code)} ({error}): the reason"


def test_upload_and_stopped_events() -> None:
    upload = upload_refused_event(3.0, IP, "up.bin", ErrorPacket(2, "read-only server"))
    assert (upload.outcome, upload.error_code, upload.error) == (
        TftpOutcome.UPLOAD_REFUSED,
        2,
        "read-only server",
    )
    assert upload.detail == "up.bin: upload refused (read-only server)"
    stopped = stopped_event(4.0, IP, "big.bin", "server shutting down", 512, 2048)
    assert (stopped.outcome, stopped.bytes_acked, stopped.size) == (TftpOutcome.STOPPED, 512, 2048)
    assert stopped.detail == "big.bin: stopped, server shutting down (512 of 2048 bytes)"
    assert stopped.error_code is None

"""The timeline events of TFTP requests, and the one log line that ends each read transfer."""

from __future__ import annotations

import logging

from pxelab.events import Event, TftpOutcome, tftp_summary
from pxelab.tftp.packet import ErrorCode, ErrorPacket, ReadRequest
from pxelab.tftp.session import Ending, Outcome, ReadSession

__all__ = [
    "log_outcome",
    "refusal_event",
    "stopped_event",
    "transfer_event",
    "upload_refused_event",
]

log = logging.getLogger("pxelab.tftp")

_OUTCOMES = {
    Ending.COMPLETED: TftpOutcome.COMPLETED,
    Ending.ABORTED_AFTER_OACK: TftpOutcome.SIZE_PROBE,
    Ending.CLIENT_ERROR: TftpOutcome.CLIENT_ERROR,
    Ending.TIMED_OUT: TftpOutcome.TIMED_OUT,
    Ending.IDLE: TftpOutcome.IDLE,
    Ending.ILLEGAL_OPERATION: TftpOutcome.ERROR,
}
"""How a session ended -> how the timeline says it ended."""
_ERROR_TEXT: dict[int, str] = {
    ErrorCode.FILE_NOT_FOUND: "file not found",
    ErrorCode.ACCESS_VIOLATION: "access violation",
}
"""What a refusal says of its code; other codes show the message sent."""


def transfer_event(
    now: float, ip: str, request: ReadRequest, session: ReadSession, outcome: Outcome
) -> Event:
    """The event of a read transfer that ended."""
    negotiated, error = session.negotiated, outcome.error
    tsize = negotiated.oack.get("tsize")
    return Event(
        now,
        "tftp",
        ip=ip,
        file=request.filename,
        outcome=_OUTCOMES[outcome.ending],
        bytes_acked=outcome.bytes_acked,
        size=session.size,
        tsize=int(tsize) if tsize is not None and tsize.isdigit() else None,
        blksize=negotiated.blksize,
        windowsize=negotiated.windowsize,
        error_code=int(error.code) if error is not None else None,
        error=error.message if error is not None else "",
    )


def refusal_event(
    now: float, ip: str, name: str, error: ErrorPacket, reason: str = "", *, policy: bool = False
) -> Event:
    """The event of a read request answered with `error`; `policy`: the path was refused."""
    return Event(
        now,
        "tftp",
        ip=ip,
        file=name,
        outcome=TftpOutcome.REFUSED if policy else TftpOutcome.ERROR,
        error_code=int(error.code),
        error=_ERROR_TEXT.get(error.code, error.message),
        reason=reason,
    )


def upload_refused_event(now: float, ip: str, name: str, error: ErrorPacket) -> Event:
    """The event of a write request (the server is read-only)."""
    return Event(
        now,
        "tftp",
        ip=ip,
        file=name,
        outcome=TftpOutcome.UPLOAD_REFUSED,
        error_code=int(error.code),
        error=error.message,
    )


def stopped_event(now: float, ip: str, name: str, reason: str, acked: int, size: int) -> Event:
    """The event of a transfer the server stopped without telling the client."""
    return Event(
        now,
        "tftp",
        ip=ip,
        file=name,
        outcome=TftpOutcome.STOPPED,
        bytes_acked=acked,
        size=size,
        reason=reason,
    )


def log_outcome(peer: str, event: Event, elapsed: float) -> None:
    """Log the end of a transfer (its `transfer_event`) on one line."""
    summary = tftp_summary(event)
    if event.outcome is TftpOutcome.COMPLETED:
        log.info(
            "%s RRQ %r: %s in %.3f s (blksize %s, windowsize %s)",
            peer,
            event.file,
            summary,
            elapsed,
            event.blksize,
            event.windowsize,
        )
    else:
        log.info("%s RRQ %r: %s", peer, event.file, summary)

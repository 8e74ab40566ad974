"""The one log line (and timeline detail) that ends each TFTP read transfer."""

from __future__ import annotations

import logging

from pxelab.tftp.packet import ReadRequest
from pxelab.tftp.session import Ending, Outcome, ReadSession

__all__ = ["log_outcome"]

log = logging.getLogger("pxelab.tftp")


def log_outcome(
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

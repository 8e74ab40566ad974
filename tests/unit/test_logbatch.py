"""The daemon's batching log handler: every line, in order, drained on close."""

from __future__ import annotations

import io
import logging
import time

from pxelab.logbatch import BatchHandler


def logger_to(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [handler]
    return logger


def test_close_writes_every_queued_line_in_order() -> None:
    out = io.StringIO()
    handler = BatchHandler(out, interval=60)  # the thread never wakes on its own here
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logger_to(handler, "pxelab.test.batch.order")
    for i in range(500):
        log.info("%s GET /boot %d %.3fs%s", "10.0.0.1", i, 0.001, "")
    log.debug("not at this level")
    assert out.getvalue() == ""  # queued, not yet written
    handler.close()
    lines = out.getvalue().splitlines()
    assert lines == [f"INFO 10.0.0.1 GET /boot {i} 0.001s" for i in range(500)]


def test_the_thread_writes_without_a_close() -> None:
    out = io.StringIO()
    handler = BatchHandler(out, interval=0.01)
    log = logger_to(handler, "pxelab.test.batch.thread")
    log.warning("one line")
    deadline = time.monotonic() + 10
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.getvalue() == "one line\n"
    handler.close()


def test_a_mutable_argument_and_an_exception_are_formatted_when_logged() -> None:
    out = io.StringIO()
    handler = BatchHandler(out, interval=60)
    log = logger_to(handler, "pxelab.test.batch.mutable")
    seen = ["first"]
    log.info("seen: %s", seen)
    seen.append("later")  # after the call: the line shows what was logged
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("it failed")
    handler.close()
    text = out.getvalue()
    assert text.startswith("seen: ['first']\nit failed\nTraceback")
    assert "RuntimeError: boom" in text


def test_close_twice_is_harmless() -> None:
    out = io.StringIO()
    handler = BatchHandler(out, interval=60)
    logger_to(handler, "pxelab.test.batch.twice").info("x")
    handler.close()
    handler.close()
    assert out.getvalue() == "x\n"

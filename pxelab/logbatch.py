"""The daemon's log handler: the event loop only appends each record to a deque; a thread formats
them and writes each batch with one write (no per-line wake-up, lock or syscall on the loop)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TextIO

BATCH_INTERVAL = 0.0
"""Seconds the writer lets a batch gather once a record came (0: it writes at once, and the
records that come while it writes make the next batch: lines show as the answers go)."""
IDLE_CHECK = 1.0
"""Seconds an idle writer thread sleeps at most (a wake-up lost to a race costs this delay)."""
_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Argument types safe to format later, on the writer thread: immutable, cheap `str`."""


class BatchHandler(logging.Handler):
    """Hand records to a writer thread in batches; `close` drains what is left, so a clean stop
    (SIGTERM) loses no line."""

    def __init__(self, stream: TextIO, interval: float = BATCH_INTERVAL) -> None:
        super().__init__()
        self.stream = stream
        """Where the formatted lines go (stderr in the daemon)."""
        self.interval = interval
        """Seconds a batch gathers before the thread writes it."""
        self._pending: deque[logging.LogRecord] = deque()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pxelab-log", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and queue the record: no handler lock (a deque append is atomic)."""
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record; one whose message could change before the thread formats it (an
        argument that is not a plain value, an exception) is formatted here, now."""
        exc_info = record.exc_info
        if exc_info or (record.args and not _plain(record.args)):
            try:
                record.msg, record.args = record.getMessage(), None
                if exc_info:
                    formatter = self.formatter or logging.Formatter()
                    record.exc_text = formatter.formatException(exc_info)
                    record.exc_info = None
            except Exception:
                self.handleError(record)
                return
        pending = self._pending
        pending.append(record)
        if len(pending) == 1:  # the first of a batch wakes the writer; the rest ride along
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(IDLE_CHECK)  # idle: no wake-ups until a record comes
            self._wake.clear()
            if self.interval:
                self._stopping.wait(self.interval)  # let the batch gather (ends at once on stop)
            self.flush()
        self.flush()

    def flush(self) -> None:
        """Format and write every queued record (the writer thread, or the last drain)."""
        pending, lines = self._pending, []
        while pending:
            record = pending.popleft()
            try:
                lines.append(self.format(record))
            except Exception:
                self.handleError(record)
        if not lines:
            return
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "log write failed"}))

    def close(self) -> None:
        """Stop the writer thread after it wrote every queued line (idempotent)."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        super().close()


def _plain(args: object) -> bool:
    return isinstance(args, tuple) and set(map(type, args)) <= _PLAIN

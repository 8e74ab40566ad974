"""Download progress: a one-line bar (bytes, rate, ETA) on a terminal, plain lines elsewhere.

`format_bar` and `format_line` are pure; `Progress` only writes what they return.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; bytes below 1 KiB stay whole."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """75 -> '1:15', 3725 -> '1:02:05'."""
    s = max(0, round(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta(done: int, total: int | None, rate: float) -> str:
    """Time left at this rate, or '?' when the total or the rate is unknown."""
    if total is None or rate <= 0 or done > total:
        return "?"
    return human_duration((total - done) / rate)


def format_bar(name: str, done: int, total: int | None, rate: float, width: int = 80) -> str:
    """`name [#####.....]  45% 1.2/2.6 GiB 12.3 MiB/s ETA 1:15`, at most `width` characters."""
    speed = f"{human_bytes(rate)}/s"
    if total:
        frac = min(1.0, done / total)
        stats = f"{frac:4.0%} {human_bytes(done)}/{human_bytes(total)} {speed} ETA {eta(done, total, rate)}"
    else:
        stats = f"{human_bytes(done)} {speed}"
    room = width - len(stats) - 4
    keep = max(room - 10, 8)  # leave the bar at least 10 cells when the name is long
    label = name if len(name) <= keep else "…" + name[-keep + 1 :]
    cells = room - len(label)
    if total and cells >= 5:
        filled = int(cells * min(1.0, done / total))
        return f"{label} [{'#' * filled}{'.' * (cells - filled)}] {stats}"[:width]
    return f"{label} {stats}"[:width]


def format_line(name: str, done: int, total: int | None, rate: float) -> str:
    """One plain log line: `name: 1.2 GiB of 2.6 GiB (45%), 12.3 MiB/s, ETA 1:15`."""
    if total:
        return (
            f"{name}: {human_bytes(done)} of {human_bytes(total)} ({done / total:.0%}), "
            f"{human_bytes(rate)}/s, ETA {eta(done, total, rate)}"
        )
    return f"{name}: {human_bytes(done)}, {human_bytes(rate)}/s"


class Progress:
    """Reports one transfer at a time to a stream: redraws a bar on a TTY, else logs lines."""

    def __init__(
        self,
        stream: TextIO,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        every: float | None = None,
        width: int | None = None,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.every = every if every is not None else (0.1 if self.tty else 10.0)
        self.width = width or max(40, shutil.get_terminal_size().columns - 1)
        self._name = ""
        self._total: int | None = None
        self._done = self._start_done = 0
        self._started = self._last = 0.0
        self.active = False
        """True between start() and finish()."""

    def start(self, name: str, total: int | None, done: int = 0) -> None:
        """A transfer of `total` bytes (None: unknown) begins; `done` were already there."""
        self._name, self._total, self._done, self._start_done = name, total, done, done
        self._started = self._last = self.clock()
        self.active = True
        if done:
            self._write(f"{name}: resuming at {human_bytes(done)}")
        elif not self.tty:
            self._write(f"{name}: downloading {human_bytes(total) if total else ''}".rstrip())

    def rate(self) -> float:
        """Bytes per second since start (resumed bytes not counted)."""
        elapsed = self.clock() - self._started
        return (self._done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int) -> None:
        """n more bytes arrived; redraws when `every` seconds have passed."""
        self._done += n
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._show()

    def finish(self, message: str) -> None:
        """The transfer ended (well or not): a last update and a closing line."""
        self.active = False
        self._show()
        if self.tty:
            self.stream.write("\n")
        self._write(f"{self._name}: {message}")

    def note(self, message: str) -> None:
        """A line that is not about the current transfer's bytes."""
        self._write(message)

    def _show(self) -> None:
        if self.tty:
            bar = format_bar(self._name, self._done, self._total, self.rate(), self.width)
            self.stream.write("\r" + bar.ljust(self.width))
            self.stream.flush()
        else:
            self._write(format_line(self._name, self._done, self._total, self.rate()))

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

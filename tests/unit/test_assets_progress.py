"""Progress output: bar and log-line formatting, and when a Progress writes (fake clock)."""

from __future__ import annotations

import io

from pxelab.assets.progress import (
    Progress,
    eta,
    format_bar,
    format_line,
    human_bytes,
    human_duration,
)

MiB = 1 << 20


def test_human_units() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 5 * MiB, 3 << 30)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]
    assert [human_duration(s) for s in (0, 75, 3725)] == ["0:00", "1:15", "1:02:05"]
    assert eta(50, 100, 10) == "0:05"
    assert eta(50, None, 10) == "?" and eta(50, 100, 0) == "?"


def test_bar_shows_bytes_rate_and_eta_within_the_width() -> None:
    bar = format_bar("ubuntu.iso", 25 * MiB, 100 * MiB, 5 * MiB, width=90)
    assert bar.startswith("ubuntu.iso [")
    assert "25% 25.0 MiB/100.0 MiB 5.0 MiB/s ETA 0:15" in bar
    filled = bar[bar.index("[") + 1 : bar.index("]")]
    assert filled.count("#") == len(filled) // 4
    assert len(bar) <= 90
    long = format_bar("x" * 200 + ".iso", 1, 2, 1, width=60)
    assert len(long) <= 60 and long.startswith("…")
    assert format_bar("f", 3 * MiB, None, MiB) == "f 3.0 MiB 1.0 MiB/s"


def test_plain_line() -> None:
    assert format_line("f.iso", 50 * MiB, 200 * MiB, 10 * MiB) == (
        "f.iso: 50.0 MiB of 200.0 MiB (25%), 10.0 MiB/s, ETA 0:15"
    )
    assert format_line("f", MiB, None, MiB) == "f: 1.0 MiB, 1.0 MiB/s"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tty_redraws_one_line() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=True, clock=clock, width=70)
    progress.start("a.iso", 10 * MiB)
    clock.now += 1
    progress.advance(2 * MiB)
    clock.now += 1
    progress.advance(2 * MiB)
    progress.finish("done")
    text = out.getvalue()
    assert text.count("\r") == 3
    assert "40% 4.0 MiB/10.0 MiB 2.0 MiB/s ETA 0:03" in text
    assert text.endswith("\na.iso: done\n")


def test_no_tty_logs_a_line_every_ten_seconds_and_resumes_from_the_part() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, tty=False, clock=clock)
    progress.start("a.iso", 100 * MiB, done=40 * MiB)
    for _ in range(30):
        clock.now += 1
        progress.advance(MiB)
    lines = out.getvalue().splitlines()
    assert lines[0] == "a.iso: resuming at 40.0 MiB"
    assert lines[1:] == [
        "a.iso: 50.0 MiB of 100.0 MiB (50%), 1.0 MiB/s, ETA 0:50",
        "a.iso: 60.0 MiB of 100.0 MiB (60%), 1.0 MiB/s, ETA 0:40",
        "a.iso: 70.0 MiB of 100.0 MiB (70%), 1.0 MiB/s, ETA 0:30",
    ]
    assert "\r" not in out.getvalue()

"""The lossy wire's pure part: drops and reorders at the asked rates, loses nothing else."""

from __future__ import annotations

import random

from pxelab.testing.lossy import HOLD_SECONDS, Direction


def test_loss_and_reordering_rates_and_nothing_else_lost() -> None:
    wire = Direction("to-vm", loss=0.1, reorder=0.1, rng=random.Random(3))
    sent = [i.to_bytes(4, "big") for i in range(20_000)]
    out: list[bytes] = []
    for i, frame in enumerate(sent):
        out += wire.frames(frame, now=i * 0.001)
    out += wire.due(now=1e9)
    assert 1_800 < wire.counts["dropped"] < 2_200
    assert 1_400 < wire.counts["reordered"] < 2_000
    assert len(out) == len(sent) - wire.counts["dropped"]
    assert len(set(out)) == len(out)  # no duplicates
    assert out != sorted(out)  # reordered


def test_a_held_frame_is_released_after_its_hold_time() -> None:
    wire = Direction("from-vm", loss=0.0, reorder=1.0, rng=random.Random(1))
    assert wire.frames(b"a", now=0.0) == []
    assert wire.due(now=HOLD_SECONDS / 2) == []
    assert wire.due(now=HOLD_SECONDS) == [b"a"]

"""Fuzzing on a CI budget: the same targets `make fuzz` runs for a million inputs.

Hypothesis feeds random and mutated inputs in-process; atheris (libFuzzer) runs each target
coverage-guided in a subprocess. Either finding an exception fails the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.targets import TARGETS, dhcp_one, seed_inputs, tftp_one

ROOT = Path(__file__).resolve().parents[2]
CI_RUNS = 30_000


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    flips = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8)
    return flips.map(lambda edits: bytes(_apply(bytearray(seed), edits)))


def _apply(data: bytearray, edits: list[tuple[int, int]]) -> bytearray:
    for index, value in edits:
        data[index] = value
    return data


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=600), _mutations(seed_inputs()["dhcp"][0])))
def test_dhcp_target_never_raises(data: bytes) -> None:
    dhcp_one(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), _mutations(seed_inputs()["tftp"][0])))
def test_tftp_target_never_raises(data: bytes) -> None:
    tftp_one(data)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_budget_finds_nothing(target: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), target, f"-runs={CI_RUNS}"],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert re.search(rf"Done {CI_RUNS} runs", proc.stderr), proc.stderr[-2000:]

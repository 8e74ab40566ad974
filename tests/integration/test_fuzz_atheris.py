"""Fuzzing on a CI budget with atheris (libFuzzer): each `make fuzz` target runs coverage-guided in
a subprocess; any exception it finds fails the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
CI_RUNS = 30_000


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

"""`make fuzz`: coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

    python fuzz/run.py dhcp -runs=500000 [libFuzzer flags ...]
Exits non-zero on the first finding, with the crashing input saved by libFuzzer.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["pxelab"]):
    from fuzz.targets import TARGETS, seed_inputs


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: fuzz/run.py {{{','.join(TARGETS)}}} [libFuzzer flags]")
    name = sys.argv[1]
    corpus = Path(tempfile.mkdtemp(prefix=f"pxelab-fuzz-{name}-"))
    for i, seed in enumerate(seed_inputs()[name]):
        (corpus / f"seed{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()

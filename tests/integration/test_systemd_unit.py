"""configs/pxelab.service: `systemd-analyze verify` finds nothing to say."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "configs" / "pxelab.service"


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze comes with Debian's systemd package (scripts/setup.sh)"
    pxelab = Path(sys.executable).with_name("pxelab")
    assert pxelab.exists(), f"{pxelab}: pxelab's console script is installed beside the interpreter"
    local = tmp_path / "pxelab.service"
    local.write_text(UNIT.read_text().replace("/opt/pxelab/bin/pxelab", str(pxelab)))
    proc = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    complaints = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "pxelab.service" in line
    ]
    assert complaints == []

"""configs/pxelab.service: least privilege, and `systemd-analyze verify` finds nothing to say."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "configs" / "pxelab.service"


def _settings() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in UNIT.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


def test_unit_runs_unprivileged_with_only_the_capabilities_it_needs() -> None:
    unit = _settings()
    assert unit["User"] == "pxelab"
    assert set(unit["AmbientCapabilities"].split()) == {
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_NET_ADMIN",
    }
    assert unit["CapabilityBoundingSet"] == unit["AmbientCapabilities"]
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["ProtectSystem"] == "strict"
    assert unit["StateDirectory"] == "pxelab"
    assert "/var/lib/pxelab" in unit["ReadWritePaths"]
    assert unit["ExecStart"].split()[1:3] == ["serve", "--config"]


def test_systemd_analyze_verify_is_silent(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze comes with Debian's systemd package (scripts/setup.sh)"
    pxelab = Path(sys.executable).with_name("pxelab")
    assert pxelab.exists(), f"{pxelab}: pxelab's console script is installed beside the interpreter"
    local = tmp_path / "pxelab.service"
    local.write_text(UNIT.read_text().replace("/usr/local/bin/pxelab", str(pxelab)))
    proc = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    complaints = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "pxelab.service" in line
    ]
    assert complaints == []

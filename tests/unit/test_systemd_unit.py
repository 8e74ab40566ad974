"""configs/pxelab.service runs pxelab with least privilege."""

from __future__ import annotations

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

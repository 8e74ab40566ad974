"""`pxelab leases` in-process on a temporary SQLite store: IPv4 and IPv6 leases, table and JSON."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from pxelab.cli.main import main
from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.dhcp6.leases import Lease6
from pxelab.state.sqlite import FILE_NAME, SqliteStore

A, B = "52:54:00:00:03:01", "52:54:00:00:03:02"
FAR = 4102444800.0  # 2100-01-01T00:00:00Z: active whenever the test runs


def _store(state_dir: Path, leases: list[Lease], leases6: list[Lease6]) -> None:
    """Write leases into the store of state_dir, as a daemon (instance "lab-1") does."""

    async def write() -> None:
        store = SqliteStore(state_dir / FILE_NAME, instance="lab-1")
        await store.open()
        try:
            assert await store.commit_leases(leases, 0.0) == []
            assert await store.commit_leases6(leases6, 0.0) == []
        finally:
            await store.close()

    asyncio.run(write())


def _leases(tmp_path: Path, *argv: str) -> int:
    return main(["leases", *argv, "--state-dir", str(tmp_path / "state")])


def test_leases_lists_ipv4_then_ipv6(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v4 = Lease(IPv4Address("10.0.0.5"), A, LeaseState.BOUND, FAR)
    v6 = [
        Lease6(IPv6Address("2001:db8::1000"), A, 7, LeaseState.BOUND, FAR),
        Lease6(IPv6Address("2001:db8::fff"), "duid:0004ab", 1, LeaseState.DECLINED, FAR),
        Lease6(IPv6Address("2001:db8::1"), B, 1, LeaseState.BOUND, 10.0),  # expired: not listed
    ]
    _store(tmp_path / "state", [v4], v6)
    assert _leases(tmp_path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["IP", "MAC", "STATE", "EXPIRES", "INSTANCE"]
    assert lines[1].split() == ["10.0.0.5", A, "bound", "2100-01-01", "00:00:00Z", "lab-1"]
    assert lines[2] == ""
    assert lines[3].split() == ["IPV6", "MAC/DUID", "IAID", "STATE", "EXPIRES", "INSTANCE"]
    assert [line.split()[:4] for line in lines[4:]] == [  # in address order
        ["2001:db8::fff", "duid:0004ab", "1", "declined"],
        ["2001:db8::1000", A, "7", "bound"],
    ]
    assert _leases(tmp_path, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["leases"] == [
        {"mac": A, "ip": "10.0.0.5", "state": "bound", "expires": FAR, "instance": "lab-1"}
    ]
    assert [(x["ip"], x["client"], x["mac"], x["iaid"]) for x in shown["leases6"]] == [
        ("2001:db8::fff", "duid:0004ab", None, 1),
        ("2001:db8::1000", A, A, 7),
    ]


def test_no_ipv6_leases_no_ipv6_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(tmp_path / "state", [Lease(IPv4Address("10.0.0.5"), A, LeaseState.BOUND, FAR)], [])
    assert _leases(tmp_path) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2  # the header and one lease
    assert _leases(tmp_path, "--json") == 0
    assert json.loads(capsys.readouterr().out)["leases6"] == []

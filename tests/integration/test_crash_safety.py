"""kill -9 in the middle of a perfdhcp run at 1,000 DORA/s, restart, run again: no address goes
to two MACs, every lease from before the crash is kept by its MAC, and reservations hold."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import Lab, NetNs, lab

RESERVED_MAC = "52:54:00:c7:a5:01"


def _perfdhcp(client: NetNs, the_lab: Lab, seconds: int) -> subprocess.Popen[str]:
    return client.popen(
        "perfdhcp", "-4", "-l", "eth0", "-r", "1000", "-R", "150", "-p", str(seconds),
        "-W", "1000000", "-d", "2", the_lab.server_ip,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _bound(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT ip, mac FROM leases WHERE state = 'bound'").fetchall()
    return {str(IPv4Address(ip)): mac for ip, mac in rows}


def _udhcpc(ns: NetNs) -> str:
    proc = ns.run("udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true",
                  timeout=30, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stderr + proc.stdout


@pytest.mark.netns
def test_kill_9_under_load_loses_no_lease(tmp_path: Path) -> None:
    with lab() as the_lab:
        host = {"name": "reserved", "mac": RESERVED_MAC, "ip": the_lab.ip(5)}
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        db = dirs.state / "pxelab.sqlite3"
        pool = ("--dhcp-range", f"{the_lab.ip(20)}-{the_lab.ip(250)}", "--lease-time", "3600")
        client = the_lab.add_client()
        client.run(
            "ip", "addr", "add", f"{the_lab.ip(2)}/24", "dev", "eth0"
        )  # perfdhcp relays from .2

        daemon = bootlab.start_daemon(the_lab, dirs, *pool)
        load = _perfdhcp(client, the_lab, 6)
        time.sleep(3)
        daemon.proc.send_signal(signal.SIGKILL)  # in the middle of the run
        assert daemon.proc.wait(timeout=10) == -signal.SIGKILL
        load.communicate(timeout=60)
        before = _bound(db)
        assert len(before) >= 50, f"only {len(before)} leases were bound before the crash"
        assert the_lab.ip(5) not in before or before[the_lab.ip(5)] == RESERVED_MAC

        daemon = bootlab.start_daemon(the_lab, dirs, *pool)
        try:
            again = _perfdhcp(client, the_lab, 4)
            output, _ = again.communicate(timeout=60)
            assert "Rate:" in output, output
            reserved = the_lab.add_client(RESERVED_MAC)
            assert f"lease of {the_lab.ip(5)} obtained" in _udhcpc(reserved)
        finally:
            assert daemon.stop() == 0, daemon.text()[-3000:]
        after = _bound(db)
        moved = {ip: (mac, after.get(ip)) for ip, mac in before.items() if after.get(ip) != mac}
        assert moved == {}, f"leases lost or handed to another MAC after kill -9: {moved}"
        macs = list(after.values())
        assert len(macs) == len(set(macs)), "a MAC holds two addresses"
        assert after.get(the_lab.ip(5)) == RESERVED_MAC
        print(
            f"kill -9 under load: {len(before)} leases before the crash, all kept; {len(after)} after"
        )

"""kill -9 in the middle of a perfdhcp run at 1,000 DORA/s, restart, run again: no address goes
to two MACs, every ACK a client saw before the crash is kept by its MAC, and reservations hold."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import Lab, NetNs, lab

RESERVED_MAC = "52:54:00:c7:a5:01"
ROOT = Path(__file__).resolve().parents[2]
ACK_SNIFFER = textwrap.dedent(
    """
    import socket, sys
    from pxelab.dhcp.packet import MessageType, OptionCode, parse
    from pxelab.errors import MalformedPacket
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sock.bind(("eth0", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    out = open(sys.argv[1], "w", buffering=1)
    out.write("ready\\n")
    while True:
        ip = sock.recv(65535)[14:]
        udp = ip[(ip[0] & 15) * 4 :]
        if ip[9] != 17 or udp[:2] != b"\\x00\\x43":  # UDP from port 67: the server's replies
            continue
        try:
            reply = parse(udp[8:])
        except MalformedPacket:
            continue
        if reply.option(OptionCode.MESSAGE_TYPE) == bytes((MessageType.ACK,)):
            out.write(f"{reply.yiaddr} {reply.chaddr[:6].hex(':')}\\n")
    """
)
"""Records, on the client's side of the wire, every DHCPACK the server sent (address, MAC)."""


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


def _wait(ready: Callable[[], bool], what: str, log: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert time.monotonic() < deadline, f"no {what} within 60 s\n{log()[-3000:]}"
        time.sleep(0.05)


def _ack(line: str) -> tuple[str, str]:
    ip, mac = line.split()
    return ip, mac


def _bound_count(db: Path) -> int:
    try:
        return len(_bound(db)) if db.exists() else 0
    except sqlite3.OperationalError:  # the daemon has not made the table yet
        return 0


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

        acks = tmp_path / "acks.txt"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sniffer = client.popen(sys.executable, "-c", ACK_SNIFFER, str(acks), env=env)
        try:
            _wait(lambda: acks.exists() and acks.read_text().startswith("ready"), "sniffer")
            assert sniffer.poll() is None
            daemon = bootlab.start_daemon(the_lab, dirs, *pool)
            load = _perfdhcp(client, the_lab, 10)
            # kill once leases are flowing (a positive signal, not a fixed sleep), mid-run
            _wait(lambda: _bound_count(db) >= 50, "50 bound leases", daemon.text)
            assert load.poll() is None, "perfdhcp ended before the kill"
            daemon.proc.send_signal(signal.SIGKILL)
            assert daemon.proc.wait(timeout=10) == -signal.SIGKILL
            load.communicate(timeout=60)
        finally:
            sniffer.kill()
            sniffer.wait()
        acked = [_ack(line) for line in acks.read_text().splitlines()[1:]]
        # every ACK the clients received before the crash, seen on the wire, not in the database
        macs_of: dict[str, set[str]] = {}
        for ip, mac in acked:
            macs_of.setdefault(ip, set()).add(mac)
        assert acked and all(len(macs) == 1 for macs in macs_of.values()), macs_of
        before = dict(acked)
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
        assert moved == {}, f"acknowledged leases lost or moved after kill -9: {moved}"
        macs = list(after.values())
        assert len(macs) == len(set(macs)), "a MAC holds two addresses"
        assert after.get(the_lab.ip(5)) == RESERVED_MAC
        print(
            f"kill -9 under load: {len(before)} acknowledged leases before the crash, all kept; "
            f"{len(after)} after"
        )

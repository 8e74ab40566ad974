"""Two pxelab instances on one bridge share one PostgreSQL: hundreds of DHCP clients, one
instance killed with SIGKILL partway, every client still leased and no address held twice; a
VM boots from the survivor; an install state set through one instance is served by the other.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import Lab, NetNs, lab
from pxelab.testing.postgres import PostgresCluster
from pxelab.testing.qemu import start_x86, tap_netdev

ACKS = re.compile(r": ACK \d")
"""A DHCPACK in a daemon's log."""
CLIENTS = 200  # the pool (.20-.250) holds 231
VM_MAC = "52:54:00:2b:00:01"
BOOT_TIMEOUT = 240


def _serve(
    the_lab: Lab, dirs: bootlab.LabDirs, ns: NetNs, interface: str, url: str
) -> bootlab.Daemon:
    pool = f"{the_lab.ip(20)}-{the_lab.ip(250)}"
    args = ["--interface", interface, "--dhcp-range", pool, "--state-url", url]
    return bootlab.launch(dirs, args, ns)


def _curl(ns: NetNs, url: str, *extra: str) -> str:
    done = ns.run("curl", "-sS", "-f", "--max-time", "10", *extra, url, timeout=20)
    return done.stdout


def _script_from(ns: NetNs, server: str) -> str:
    return _curl(ns, f"http://{server}:8080/boot?mac={VM_MAC}")


def _wait_until(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


@pytest.mark.netns
@pytest.mark.e2e
def test_two_instances_share_leases_and_states(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    with lab() as the_lab:
        host = {"name": "shared-vm", "mac": VM_MAC, "distro": "demo", "kernel_args": "quiet"}
        one = bootlab.prepare(tmp_path / "one", [host])
        two = bootlab.LabDirs(tmp_path / "two")  # its own state dir; same hosts, images, TFTP
        for d in (two.root, two.state):
            d.mkdir(parents=True, exist_ok=True)
        for name in ("hosts", "images", "tftp"):
            (two.root / name).symlink_to(one.root / name)

        # instance B: its own namespace and address on the same bridge
        b_ns = the_lab.add_client()
        b_ns.run("ip", "addr", "add", f"{the_lab.ip(3)}/24", "dev", "eth0")
        clients = the_lab.add_client()
        clients.run("ip", "addr", "add", f"{the_lab.ip(2)}/24", "dev", "eth0")

        a = _serve(the_lab, one, the_lab.server, the_lab.bridge, url)
        b = _serve(the_lab, two, b_ns, "eth0", url)
        a_ip, b_ip = the_lab.server_ip, the_lab.ip(3)
        try:
            # -- an install state set through A is served by B, and back --------------------
            token = bootlab.create_token(one, "ops", "--state-url", url)
            auth = ("-H", f"Authorization: Bearer {token}", "-X", "POST")
            _curl(clients, f"http://{a_ip}:8080/api/hosts/{VM_MAC}/installed", *auth)
            _wait_until(
                "B serves A's 'installed'",
                lambda: _script_from(clients, b_ip).rstrip().endswith("exit"),
            )
            _curl(clients, f"http://{b_ip}:8080/api/hosts/{VM_MAC}/reinstall", *auth)
            _wait_until(
                "A serves B's 'reinstall'", lambda: "kernel " in _script_from(clients, a_ip)
            )

            # -- hundreds of clients; A killed with SIGKILL partway ----------------------------
            swarm = clients.popen(
                sys.executable, "-m", "tests.e2e.dhcp_swarm",
                json.dumps({"count": CLIENTS, "seconds": 90, "stagger": 0.01}),
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            # kill A once it has acknowledged some of the swarm (a positive signal, not a fixed
            # sleep): both instances then really answered, and A dies partway
            _wait_until("A acknowledges 20 clients", lambda: len(ACKS.findall(a.text())) >= 20, 60)
            assert swarm.poll() is None, "the swarm ended before A was killed"
            a.proc.send_signal(signal.SIGKILL)
            assert a.proc.wait(timeout=10) == -signal.SIGKILL
            out, _ = swarm.communicate(timeout=150)
            rows = [json.loads(line) for line in out.splitlines()]
            assert len(rows) == CLIENTS
            missing = [r["mac"] for r in rows if not r["ip"]]
            assert missing == [], f"{len(missing)} clients got no address: {missing[:5]}"
            by_ip: dict[str, list[str]] = {}
            for r in rows:
                by_ip.setdefault(r["ip"], []).append(r["mac"])
            twice = {ip: macs for ip, macs in by_ip.items() if len(macs) > 1}
            assert twice == {}, f"addresses acknowledged to two clients: {twice}"
            servers = {r["server"] for r in rows}
            assert servers == {a_ip, b_ip}, f"both instances should have answered: {servers}"
            retried = sum(1 for r in rows if r["tries"] > 1)
            from_a = sum(1 for r in rows if r["server"] == a_ip)
            print(f"{CLIENTS} clients: {from_a} leased from A before its SIGKILL, "
                  f"{CLIENTS - from_a} from B; {retried} had to start again")  # fmt: skip

            # the database agrees: every client's address is bound to it, and only to it
            db = urlsplit(url).path.lstrip("/")
            bound = pg_cluster.psql("SELECT ip, mac FROM leases WHERE state = 'bound'", db)
            pairs = {}  # ip -> mac; the primary key on ip keeps one row per address
            for line in bound.splitlines():
                number, mac = line.split("|")
                pairs[str(IPv4Address(int(number)))] = mac
            macs = list(pairs.values())
            assert len(macs) == len(set(macs)), "a MAC holds two bound addresses"
            wrong = {
                r["ip"]: (r["mac"], pairs.get(r["ip"]), r["history"])
                for r in rows
                if pairs.get(r["ip"]) != r["mac"]
            }
            assert wrong == {}, f"acknowledged but not bound so in the database: {wrong}"

            # -- a VM boots while only B is alive -------------------------------------------
            with bootlab.running(b) as vms:
                vms.append(
                    vm := start_x86(
                        tmp_path / "vm", VM_MAC, tap_netdev(the_lab.add_tap()), ns=the_lab.server
                    )
                )
                found = vm.wait_for(rf"{MARKER} mac=(\S*) cmdline=(.*)", BOOT_TIMEOUT)
                assert found.group(1) == VM_MAC
            log = b.text()  # B served every stage of that boot
            assert "ipxe.efi" in log and "GET /boot?mac=" in log and "shared-vm" in log
            assert "Traceback" not in b.text()
        finally:
            a.stop()
            b.stop()

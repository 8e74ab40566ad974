"""`pxelab serve` on an IPv6-only lab bridge: RA with the prefix, DHCPv6 to real clients
(`dhclient -6`, `dhcpcd -6`), then TFTP and HTTP over IPv6 from the address it gave.

busybox's udhcpc6 is not in Debian's busybox builds, so dhcpcd (Debian dhcpcd-base) is the second
packaged client.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pxelab.testing.netns import stop_process
from tests.netns import Lab, NetNs, lab

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
KNOWN_MAC = "52:54:00:66:00:01"
HTTP_PORT = 8080


@dataclass
class V6Lab:
    """The IPv6-only lab and the daemon serving it."""

    lab: Lab
    log: Path
    tmp: Path

    @property
    def prefix(self) -> str:
        assert self.lab.ipv6_prefix is not None
        return self.lab.ipv6_prefix

    @property
    def server(self) -> str:
        return f"{self.prefix}1"


@contextmanager
def serving(the_lab: Lab, tmp: Path, *extra: str) -> Iterator[V6Lab]:
    """`pxelab serve --ipv6-prefix` on the lab's bridge (and `extra` flags) until the block ends."""
    hosts, tftp = tmp / "hosts", tmp / "tftp"
    hosts.mkdir()
    tftp.mkdir()
    (tftp / "ipxe.efi").write_bytes(bytes(range(256)) * 40)
    prefix = the_lab.ipv6_prefix
    host = {"name": "v6known", "mac": KNOWN_MAC, "ip6": f"{prefix}50"}
    (hosts / "v6known.json").write_text(json.dumps(host))
    log = tmp / "server.log"
    argv = [
        sys.executable, "-m", "pxelab", "serve", "--interface", the_lab.bridge,
        "--ipv6-prefix", f"{prefix}/64", "--ipv6-dns", f"{prefix}53",
        "--http-port", str(HTTP_PORT), "--hosts-dir", str(hosts),
        "--images-dir", str(tmp / "images"), "--tftp-root", str(tftp),
        "--state-dir", str(tmp / "state"), *extra,
    ]  # fmt: skip
    with log.open("w") as out:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = the_lab.server.popen(*argv, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 20
        while "pxelab ready" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield V6Lab(the_lab, log, tmp)
    finally:
        stop_process(proc, timeout=5)
    assert proc.returncode == 0, log.read_text()


@pytest.fixture(scope="module")
def v6lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V6Lab]:
    tmp = tmp_path_factory.mktemp("dhcp6")
    with lab(ipv4=False, ipv6=True) as the_lab, serving(the_lab, tmp) as served:
        yield served


DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in BOUND6|REBOOT6) echo "BOUND $new_ip6_address dns=$new_dhcp6_name_servers" >> {out};; esac
exit 0
"""


def dhclient6(v6lab: V6Lab, mac: str) -> str:
    """Run `dhclient -6 -1` in a new client namespace: its BOUND line (the script's)."""
    ns = v6lab.lab.add_client(mac)
    out = v6lab.tmp / "dhclient.out"
    script = v6lab.tmp / "dhclient.sh"
    script.write_text(DHCLIENT_SCRIPT.format(out=out))
    script.chmod(0o755)
    ns.run(
        "dhclient", "-6", "-1", "-v", "-sf", str(script), "-lf", str(v6lab.tmp / "dhclient.leases"),
        "-pf", str(v6lab.tmp / "dhclient.pid"), "eth0", timeout=40,
    )  # fmt: skip
    try:
        return out.read_text()
    finally:
        ns.run("dhclient", "-6", "-x", "-pf", str(v6lab.tmp / "dhclient.pid"), check=False)


def test_dhclient6_gets_its_reservation_and_dns(v6lab: V6Lab) -> None:
    assert f"BOUND {v6lab.prefix}50 dns={v6lab.prefix}53" in dhclient6(v6lab, KNOWN_MAC)
    text = v6lab.log.read_text()
    assert re.search(rf"REQUEST from {KNOWN_MAC} .*: REPLY {re.escape(v6lab.prefix)}50", text), text


def test_dhcpcd_follows_the_ra_and_gets_a_pool_address(v6lab: V6Lab) -> None:
    mac = "52:54:00:66:00:02"
    ns = v6lab.lab.add_client(mac)
    run = ns.run(
        "dhcpcd", "-6", "-1", "-T", "-t", "30", "-f", "/dev/null", "eth0", timeout=45, check=False
    )
    text = run.stdout + run.stderr
    assert f"new_dhcp6_ia_na1_ia_addr1='{v6lab.prefix}1000'" in text, text
    assert f"new_dhcp6_name_servers='{v6lab.prefix}53'" in text, text
    assert f"nd1_prefix_information1_prefix='{v6lab.prefix}'" in text, text  # the RA's prefix


def test_tftp_and_http_over_ipv6(v6lab: V6Lab) -> None:
    ns = v6lab.lab.add_client("52:54:00:66:00:03")
    ns.run("ip", "-6", "addr", "add", f"{v6lab.prefix}77/64", "dev", "eth0", "nodad")
    got = v6lab.tmp / "got.efi"
    ns.run("curl", "-sSf", "-g", "-o", str(got), f"tftp://[{v6lab.server}]/ipxe.efi", timeout=30)
    assert got.read_bytes() == bytes(range(256)) * 40
    script = ns.run("curl", "-sSf", "-g", f"http://[{v6lab.server}]:{HTTP_PORT}/boot.ipxe").stdout
    assert f"http://[{v6lab.server}]:{HTTP_PORT}/boot?mac=" in script, script
    text = v6lab.log.read_text()
    assert "HTTP on [::]" in text or "http on [::]" in text, text


UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "BOUND ip=$ip bootfile=$boot_file"
exit 0
"""


def test_dual_stack_ipv4_and_ipv6_on_one_bridge(tmp_path: Path) -> None:
    """With dhcp_range and ipv6_prefix, IPv4 DHCP (udhcpc) and DHCPv6 (dhclient -6) both work."""
    with lab(ipv4=True, ipv6=True) as the_lab:
        first, last = the_lab.ip(100), the_lab.ip(120)
        with serving(the_lab, tmp_path, "--dhcp-range", f"{first}-{last}") as served:
            assert f"BOUND {served.prefix}50" in dhclient6(served, KNOWN_MAC)
            ns = the_lab.add_client("52:54:00:66:00:04")
            script = tmp_path / "udhcpc.sh"
            script.write_text(UDHCPC_SCRIPT)
            script.chmod(0o755)
            run = ns.run(
                "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1", "-A", "1",
                "-s", str(script), "-x", "0x5d:0007", timeout=20, check=False,
            )  # fmt: skip
            assert f"BOUND ip={first} bootfile=ipxe.efi" in run.stdout, (run, served.log)
            text = served.log.read_text()
            assert f"dhcp on {the_lab.bridge}" in text and "dhcpv6 on" in text, text


def test_timeline_and_explain_over_ipv6(v6lab: V6Lab) -> None:
    """After test_dhclient6: the host's events show the DHCPv6 REPLY; explain asked over IPv6
    says what DHCPv6 hands it."""
    ns = v6lab.lab.add_client("52:54:00:66:00:05")
    ns.run("ip", "-6", "addr", "add", f"{v6lab.prefix}78/64", "dev", "eth0", "nodad")
    base = f"http://[{v6lab.server}]:{HTTP_PORT}"
    events = json.loads(ns.run("curl", "-sSf", "-g", f"{base}/api/hosts/{KNOWN_MAC}/events").stdout)
    replies = [e for e in events["events"] if e.get("message_type") == "REPLY"]
    assert replies and replies[-1]["address"] == f"{v6lab.prefix}50", events
    explained = json.loads(ns.run("curl", "-sSf", "-g", f"{base}/api/explain/{KNOWN_MAC}").stdout)
    assert explained["dhcp6"]["address"] == f"{v6lab.prefix}50", explained
    answers = {a["client"]: a["boot_file_url"] for a in explained["dhcp6"]["answers"]}
    assert answers["uefi-x64"] == f"tftp://[{v6lab.server}]/ipxe.efi", explained


def client_tool(ns: NetNs, mode: str, **config: object) -> list[object]:
    """tests/integration/dhcp_client_tool.py in `ns`: its JSON lines."""
    argv = [sys.executable, "-m", "tests.integration.dhcp_client_tool", mode, json.dumps(config)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        ns.argv(*argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_boot_files_follow_the_tftp_root_without_a_restart(tmp_path: Path) -> None:
    """Started without ipxe-arm64.efi, arm64 clients get GRUB over DHCP and DHCPv6; once the file
    is in the TFTP root they get it (one log line says so), and GRUB again once it is gone."""
    with lab(ipv4=True, ipv6=True) as the_lab:
        first, last = the_lab.ip(100), the_lab.ip(120)
        with serving(the_lab, tmp_path, "--dhcp-range", f"{first}-{last}") as served:
            ns = the_lab.add_client("52:54:00:66:00:0b")
            mac = "52:54:00:66:00:0b"

            def handed_out() -> tuple[str, object]:
                (v4,) = client_tool(ns, "collect", mac=mac, options=[[93, "000b"]], wait=3)
                (v6,) = client_tool(ns, "solicit6", mac=mac, arch=11, wait=5)
                assert isinstance(v4, dict), v4
                url = f"http://127.0.0.1:{HTTP_PORT}/api/explain/{KNOWN_MAC}?arch=uefi-arm64"
                explained = json.loads(the_lab.server.run("curl", "-fsS", url).stdout)
                (answer,) = explained["dhcp"]["answers"]  # explain says what DHCP hands out
                assert answer["boot_file"] == v4["file"], explained
                return v4["file"], v6

            def wait_for_log(needle: str, count: int) -> None:
                deadline = time.monotonic() + 10
                while served.log.read_text().count(needle) < count:
                    assert time.monotonic() < deadline, served.log.read_text()
                    time.sleep(0.1)

            tftp = tmp_path / "tftp"
            grub = f"tftp://[{served.server}]/grubnetaa64.efi"
            assert handed_out() == ("grubnetaa64.efi", grub)
            (tftp / "ipxe-arm64.efi").write_bytes(b"MZ arm64 iPXE")
            wait_for_log("boot loaders in", 1)
            assert handed_out() == ("ipxe-arm64.efi", f"tftp://[{served.server}]/ipxe-arm64.efi")
            (tftp / "ipxe-arm64.efi").unlink()
            wait_for_log("boot loaders in", 2)
            assert handed_out() == ("grubnetaa64.efi", grub)
            changes = [line for line in served.log.read_text().splitlines() if "loaders in" in line]
            assert len(changes) == 2, changes
            assert (
                "added ipxe-arm64.efi; now ipxe-arm64.efi, ipxe.efi; arm64 UEFI gets "
                "ipxe-arm64.efi" in changes[0]
            )
            assert (
                "removed ipxe-arm64.efi; now ipxe.efi; arm64 UEFI gets grubnetaa64.efi"
                in (changes[1])
            )

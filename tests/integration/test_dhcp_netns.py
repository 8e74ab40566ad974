"""pxelab's DHCP server on a lab bridge, answering real clients: udhcpc, dhclient, scapy PXE/iPXE.

One server (dhcp_server_helper.py) runs in the server namespace; each test adds its own client.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pxelab.testing.netns import stop_process
from tests.netns import Lab, NetNs, lab

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
KNOWN_MAC = "52:54:00:aa:00:01"
NOBOOT_MAC = "52:54:00:aa:00:02"
HTTP_PORT = 8080


@dataclass
class DhcpLab:
    """The lab, its running DHCP server and the server's log file."""

    lab: Lab
    server: subprocess.Popen[str]
    log: Path
    tmp: Path
    macs: Iterator[int]

    def reserved_ip(self) -> str:
        return self.lab.ip(50)

    def client(self, mac: str | None = None) -> tuple[NetNs, str]:
        """A new client namespace; a fresh unknown MAC unless one is given."""
        mac = mac or f"52:54:00:bb:00:{next(self.macs):02x}"
        return self.lab.add_client(mac), mac

    def log_text(self) -> str:
        return self.log.read_text()


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def helper(ns: NetNs, mode: str, config: dict[str, Any], **kwargs: Any) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.integration.dhcp_server_helper", mode, json.dumps(config)]
    return ns.popen(*argv, cwd=ROOT, env=env(), text=True, **kwargs)


@pytest.fixture(scope="module")
def dhcp_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DhcpLab]:
    tmp = tmp_path_factory.mktemp("dhcp")
    log = tmp / "server.log"
    with lab() as the_lab:
        config = {
            "interface": the_lab.bridge,
            "pool_start": the_lab.ip(100),
            "pool_end": the_lab.ip(120),
            "http_port": HTTP_PORT,
            "hosts": [
                {"name": "known", "mac": KNOWN_MAC.upper(), "ip": the_lab.ip(50), "pxeboot": True},
                {"name": "noboot", "mac": NOBOOT_MAC, "ip": the_lab.ip(51), "pxeboot": False},
            ],
        }
        with log.open("w") as log_file:
            server = helper(
                the_lab.server, "serve", config, stdout=subprocess.PIPE, stderr=log_file
            )
        try:
            assert server.stdout is not None
            ready, _, _ = select.select([server.stdout], [], [], 60)
            line = server.stdout.readline() if ready else ""
            assert line == f"READY {the_lab.server_ip}/24\n", (line, log.read_text())
            yield DhcpLab(the_lab, server, log, tmp, iter(range(1, 250)))
        finally:
            stop_process(server, timeout=5)
        assert server.returncode == 0, log.read_text()  # a clean stop on SIGTERM


# -- busybox udhcpc ----------------------------------------------------------------------------

UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && echo "BOUND ip=$ip subnet=$subnet router=$router dns=$dns \
serverid=$serverid lease=$lease siaddr=$siaddr boot_file=$boot_file bootfile=$bootfile tftp=$tftp"
exit 0
"""


def udhcpc(dl: DhcpLab, ns: NetNs, *extra: str) -> dict[str, str]:
    script = dl.tmp / "udhcpc.sh"
    if not script.exists():
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
    proc = ns.run(
        "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "10", "-T", "1", "-A", "1",
        "-s", str(script), "-O", "bootfile", "-O", "tftp", *extra,
        timeout=40, check=False,
    )  # fmt: skip
    bound = [line for line in proc.stdout.splitlines() if line.startswith("BOUND ")]
    assert proc.returncode == 0 and bound, (proc.stdout, proc.stderr, dl.log_text())
    return dict(field.split("=", 1) for field in bound[-1].split()[1:])


def test_udhcpc_known_mac_gets_its_reservation(dhcp_lab: DhcpLab) -> None:
    ns, _ = dhcp_lab.client(KNOWN_MAC)
    lease = udhcpc(dhcp_lab, ns)
    server = dhcp_lab.lab.server_ip
    assert lease["ip"] == dhcp_lab.reserved_ip()
    assert lease["subnet"] == "255.255.255.0"
    assert lease["serverid"] == server and lease["router"] == server and lease["dns"] == server
    assert lease["lease"] == "600"
    assert lease["siaddr"] == server
    assert lease["bootfile"] == "" and lease["boot_file"] == ""  # udhcpc is no PXE client


def test_udhcpc_unknown_mac_gets_a_pool_address(dhcp_lab: DhcpLab) -> None:
    ns, mac = dhcp_lab.client()
    lease = udhcpc(dhcp_lab, ns)
    host = int(lease["ip"].rsplit(".", 1)[1])
    assert lease["ip"].startswith(dhcp_lab.lab.subnet + ".") and 100 <= host <= 120
    log = dhcp_lab.log_text()
    assert re.search(
        rf"INFO pxelab\.dhcp DISCOVER from {mac} \(arch none\): OFFER {lease['ip']}", log
    )
    assert re.search(rf"INFO pxelab\.dhcp REQUEST from {mac} \(arch none\): ACK {lease['ip']}", log)


def test_udhcpc_as_uefi_pxe_client_gets_the_boot_file(dhcp_lab: DhcpLab) -> None:
    ns, _ = dhcp_lab.client()
    lease = udhcpc(dhcp_lab, ns, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007")
    assert lease["boot_file"] == "ipxe.efi"  # the BOOTP file field
    assert lease["bootfile"] == "ipxe.efi"  # option 67
    assert lease["tftp"] == dhcp_lab.lab.server_ip  # option 66


def test_udhcpc_pxeboot_false_gets_an_address_only(dhcp_lab: DhcpLab) -> None:
    ns, _ = dhcp_lab.client(NOBOOT_MAC)
    lease = udhcpc(dhcp_lab, ns, "-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007")
    assert lease["ip"] == dhcp_lab.lab.ip(51)
    assert lease["boot_file"] == "" and lease["bootfile"] == ""


# -- ISC dhclient ------------------------------------------------------------------------------


def test_dhclient_gets_a_lease(dhcp_lab: DhcpLab) -> None:
    ns, mac = dhcp_lab.client()
    work = dhcp_lab.tmp / f"dhclient-{mac.replace(':', '')}"
    work.mkdir()
    (work / "dhclient.conf").write_text("request subnet-mask, routers, domain-name-servers;\n")
    with (work / "out").open("w") as out:
        proc = ns.popen(
            "dhclient", "-1", "-d", "-v", "-cf", str(work / "dhclient.conf"),
            "-lf", str(work / "leases"), "-pf", str(work / "pid"), "-sf", "/bin/true", "eth0",
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "bound to" not in (work / "out").read_text():
            assert proc.poll() is None, (work / "out").read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = (work / "out").read_text()
    bound = re.search(r"bound to (\S+)", output)
    assert bound, (output, dhcp_lab.log_text())
    address = bound.group(1)
    assert f"DHCPACK of {address} from {dhcp_lab.lab.server_ip}" in output
    assert f"fixed-address {address};" in (work / "leases").read_text()


# -- scapy PXE and iPXE clients ----------------------------------------------------------------


def scapy_client(
    dl: DhcpLab, ns: NetNs, mac: str, options: dict[int, str], *, request: bool = False
) -> list[dict[str, Any] | None]:
    config = {
        "iface": "eth0",
        "mac": mac,
        "options": [[code, value] for code, value in options.items()],
        "request": request,
    }
    proc = helper(ns, "discover", config, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (stderr, dl.log_text())
    replies: list[dict[str, Any] | None] = [json.loads(line) for line in stdout.splitlines()]
    assert replies and all(replies), (stdout, stderr, dl.log_text())
    return replies


PXE_X64 = {93: "0007", 60: b"PXEClient:Arch:00007:UNDI:003016".hex(), 97: "00" + "11" * 16}


def test_scapy_uefi_x64_pxe_client(dhcp_lab: DhcpLab) -> None:
    ns, mac = dhcp_lab.client(KNOWN_MAC)
    offer, ack = scapy_client(dhcp_lab, ns, mac, PXE_X64, request=True)
    assert offer is not None and ack is not None
    server = dhcp_lab.lab.server_ip
    for reply in (offer, ack):
        assert reply["src"] == server and reply["dst"] == "255.255.255.255"
        assert reply["yiaddr"] == dhcp_lab.reserved_ip()
        assert reply["siaddr"] == server
        assert reply["file"] == "ipxe.efi"
        assert reply["options"]["boot-file-name"] == ["ipxe.efi"]
        assert reply["options"]["tftp_server_name"] == [server]
    assert offer["options"]["message-type"] == ["2"] and ack["options"]["message-type"] == ["5"]
    assert f"arch x86-64 UEFI (7)): ACK {dhcp_lab.reserved_ip()} file=ipxe.efi" in (
        dhcp_lab.log_text()
    )


def test_scapy_ipxe_client_gets_the_script_url(dhcp_lab: DhcpLab) -> None:
    ns, mac = dhcp_lab.client()
    options = {**PXE_X64, 77: b"iPXE".hex(), 175: "130101"}
    (offer,) = scapy_client(dhcp_lab, ns, mac, options)
    assert offer is not None
    url = f"http://{dhcp_lab.lab.server_ip}:{HTTP_PORT}/boot.ipxe"
    assert offer["file"] == url
    assert offer["options"]["boot-file-name"] == [url]


def test_scapy_bios_and_arm64_clients(dhcp_lab: DhcpLab) -> None:
    ns, mac = dhcp_lab.client()
    bios = {93: "0000", 60: b"PXEClient:Arch:00000:UNDI:002001".hex()}
    (offer,) = scapy_client(dhcp_lab, ns, mac, bios)
    assert offer is not None and offer["file"] == "undionly.kpxe"
    ns, mac = dhcp_lab.client()
    (offer,) = scapy_client(dhcp_lab, ns, mac, {93: "000b"})
    assert offer is not None and offer["file"] == "ipxe-arm64.efi"


def test_malformed_datagram_is_logged_and_the_server_keeps_serving(dhcp_lab: DhcpLab) -> None:
    ns, mac = dhcp_lab.client()
    sender = dhcp_lab.lab.ip(200)
    ns.run("ip", "addr", "add", f"{sender}/24", "dev", "eth0")
    send = (
        "import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.bind((sys.argv[1], 6800)); s.sendto(b'\\x01garbage', (sys.argv[2], 67))"
    )
    ns.run(sys.executable, "-c", send, sender, dhcp_lab.lab.server_ip)
    ns.run("ip", "addr", "flush", "dev", "eth0")
    (offer,) = scapy_client(dhcp_lab, ns, mac, {93: "0007"})
    assert offer is not None and offer["file"] == "ipxe.efi"
    assert (
        f"WARNING pxelab.dhcp malformed DHCP datagram from {sender}:6800: datagram is 8 bytes"
        in (dhcp_lab.log_text())
    )


def test_interface_without_an_address_is_a_clear_error(dhcp_lab: DhcpLab) -> None:
    ns, _ = dhcp_lab.client()
    code = "from pxelab.dhcp.interface import interface_ipv4; interface_ipv4('eth0')"
    proc = subprocess.run(
        ns.argv(sys.executable, "-c", code),
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "ConfigError: interface 'eth0' has no IPv4 address" in proc.stderr

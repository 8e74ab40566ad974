"""Real UEFI firmware through the other DHCP topologies: proxyDHCP beside busybox udhcpd, and a
VM on a far subnet behind Debian's isc-dhcp-relay. OVMF's own PXE client (romfile=) does DHCP and
TFTP; iPXE then fetches the script, kernel and initrd over HTTP; the initrd prints the marker.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import Lab, NetNs, lab, sh, stop_process
from pxelab.testing.qemu import start_x86, tap_netdev

pytestmark = [pytest.mark.netns, pytest.mark.e2e]

BOOT_TIMEOUT = 300
MARKER_LINE = rf"{MARKER} mac=(\S*) cmdline=(.*)"


@contextmanager
def _process(ns: NetNs, *argv: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = ns.popen(*argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop_process(proc, timeout=5)


def _bridge_with_tap(ns: NetNs, address: str) -> str:
    """A bridge `br1` holding address, with a tap for QEMU on it, in namespace ns."""
    ns.run("ip", "link", "add", "br1", "type", "bridge")
    ns.run("ip", "link", "set", "br1", "type", "bridge", "forward_delay", "0")
    ns.run("ip", "addr", "add", address, "dev", "br1")
    ns.run("ip", "link", "set", "br1", "up")
    ns.run("ip", "tuntap", "add", "dev", "tap1", "mode", "tap")
    ns.run("ip", "link", "set", "tap1", "master", "br1", "up")
    return "tap1"


def test_uefi_boots_with_proxy_dhcp_beside_udhcpd(tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    mac = "52:54:00:c0:00:01"
    with lab() as the_lab:
        # another DHCP server owns the addresses: busybox udhcpd on its own host in the lab
        other = the_lab.add_client("52:54:00:c0:00:fe")
        other.run("ip", "addr", "add", f"{the_lab.ip(2)}/24", "dev", "eth0")
        conf = tmp_path / "udhcpd.conf"
        conf.write_text(
            f"start {the_lab.ip(150)}\nend {the_lab.ip(160)}\ninterface eth0\n"
            f"lease_file {tmp_path / 'udhcpd.leases'}\npidfile {tmp_path / 'udhcpd.pid'}\n"
            "option subnet 255.255.255.0\noption lease 600\n"
        )
        (tmp_path / "udhcpd.leases").write_bytes(b"")
        udhcpd_log = tmp_path / "udhcpd.log"
        # the host file has no ip: in proxy mode pxelab hands out no addresses at all
        host = {
            "name": "proxy-vm",
            "mac": mac,
            "distro": "demo",
            "kernel_args": f"quiet pxelab.token={token}",
        }
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        with _process(other, "busybox", "udhcpd", "-f", str(conf), log=udhcpd_log):
            daemon = bootlab.start_daemon(the_lab, dirs, "--dhcp-mode", "proxy")
            with bootlab.running(daemon, udhcpd_log) as vms:
                netdev = tap_netdev(the_lab.add_tap())
                vms.append(vm := start_x86(tmp_path / "vm", mac, netdev, ns=the_lab.server))
                found = vm.wait_for(MARKER_LINE, BOOT_TIMEOUT)
        assert found.group(1) == mac and f"pxelab.token={token}" in found.group(2)
        log = daemon.text()
        assert "Traceback" not in log
        assert re.search(r"pxelab\.tftp.*'ipxe\.efi': sent", log), log
        assert re.search(r"GET /images/demo/amd64/initrd 200", log), log
        # the VM's address came from udhcpd's pool, never from pxelab
        served = re.findall(r"(\d+\.\d+\.\d+\.\d+) GET /boot\?mac=", log)
        assert served and all(150 <= int(ip.rsplit(".", 1)[1]) <= 160 for ip in served), log


def _far_subnet(the_lab: Lab, tmp_path: Path) -> tuple[NetNs, NetNs]:
    """relay: a router between the lab and 10.78.0.0/24; far: the VM's own segment (a bridge)."""
    relay = the_lab.add_client()
    relay.run("ip", "addr", "add", f"{the_lab.ip(254)}/24", "dev", "eth0")
    relay.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    far = NetNs(f"{the_lab.server.name}-far")
    sh("ip", "netns", "add", far.name)
    the_lab.clients.append(far)  # deleted with the lab
    far.run("ip", "link", "set", "lo", "up")
    # the relay's leg on the far segment: a veth whose other end sits on the far bridge
    relay.run(
        "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "uplink", "netns", far.name
    )
    relay.run("ip", "addr", "add", "10.78.0.1/24", "dev", "eth1")
    relay.run("ip", "link", "set", "eth1", "up")
    _bridge_with_tap(far, "10.78.0.2/24")
    far.run("ip", "link", "set", "uplink", "master", "br1", "up")
    the_lab.server.run("ip", "route", "add", "10.78.0.0/24", "via", the_lab.ip(254))
    return relay, far


def test_uefi_boots_from_a_far_subnet_through_isc_dhcp_relay(tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    mac = "52:54:00:c0:00:02"
    with lab() as the_lab:
        relay, far = _far_subnet(the_lab, tmp_path)
        host = {
            "name": "far-vm",
            "mac": mac,
            "distro": "demo",
            "kernel_args": f"quiet pxelab.token={token}",
        }
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        subnets = "10.78.0.0/24=10.78.0.100-10.78.0.120@10.78.0.1"
        daemon = bootlab.start_daemon(the_lab, dirs, "--subnets", subnets)
        relay_log = tmp_path / "dhcrelay.log"
        relay_argv = ("dhcrelay", "-d", "-4", "-iu", "eth0", "-id", "eth1", the_lab.server_ip)
        with bootlab.running(daemon, relay_log) as vms, _process(relay, *relay_argv, log=relay_log):
            vms.append(vm := start_x86(tmp_path / "vm", mac, tap_netdev("tap1"), ns=far))
            found = vm.wait_for(MARKER_LINE, BOOT_TIMEOUT)
        assert found.group(1) == mac and f"pxelab.token={token}" in found.group(2)
        log = daemon.text()
        assert "Traceback" not in log
        # relayed: the reply goes back to the relay, and the address comes from the far pool
        assert re.search(r"ACK 10\.78\.0\.1(0\d|1[0-9]|20) .*to 10\.78\.0\.1:67", log), log
        assert re.search(r"10\.78\.0\.\d+ GET /images/demo/amd64/vmlinuz 200", log), log

"""The real `pxelab serve` DHCP in lab namespaces: durable leases across kill -9, proxy mode
beside busybox udhcpd, a subnet behind isc-dhcp-relay, UEFI HTTP boot with curl, and RAs.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pxelab.testing import bootlab
from tests.netns import Lab, NetNs, lab, sh

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
KNOWN_MAC = "52:54:00:aa:10:01"
PXE_X64 = {93: "0007", 60: b"PXEClient:Arch:00007:UNDI:003016".hex(), 97: "00" + "ab" * 16}
HTTP_X64 = {93: "0010", 60: b"HTTPClient:Arch:00016:UNDI:003001".hex()}


@contextmanager
def daemon(the_lab: Lab, tmp: Path, *args: str) -> Iterator[bootlab.Daemon]:
    """`pxelab serve` on the lab bridge with tmp's directories, HTTP on a free port, TFTP off."""
    args = ("--interface", the_lab.bridge, "--http-port", "0", "--tftp-port", "0",
            "--log-level", "debug", *args)  # fmt: skip
    d = bootlab.launch(bootlab.LabDirs(tmp), list(args), the_lab.server)
    try:
        yield d
    finally:
        d.stop()


def setup_dirs(tmp: Path) -> None:
    for name in ("hosts", "images", "tftp", "state"):
        (tmp / name).mkdir(exist_ok=True)
    (tmp / "tftp" / "ipxe.efi").write_bytes(b"MZ" + bytes(range(256)) * 40)


def tool(ns: NetNs, mode: str, timeout: float = 60, **config: Any) -> list[Any]:
    """Run dhcp_client_tool in `ns`; its JSON lines."""
    if "options" in config:
        config["options"] = [[code, value] for code, value in config["options"].items()]
    argv = [sys.executable, "-m", "tests.integration.dhcp_client_tool", mode, json.dumps(config)]
    proc = subprocess.run(ns.argv(*argv), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def lease_ips(results: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for result in results:
        ack = result["ack"]
        assert ack is not None and ack["options"]["message-type"] == ["5"], result
        out[result["mac"]] = ack["yiaddr"]
    return out


# -- durable leases ------------------------------------------------------------------------------


def test_leases_survive_kill_9(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        (tmp_path / "hosts" / "known.json").write_text(
            json.dumps({"name": "known", "mac": KNOWN_MAC, "ip": the_lab.ip(50)})
        )
        args = ("--dhcp-range", f"{the_lab.ip(100)}-{the_lab.ip(119)}", "--lease-time", "600")
        client = the_lab.add_client()
        first_macs = [f"52:54:00:dd:00:{i:02x}" for i in range(1, 7)] + [KNOWN_MAC]
        with daemon(the_lab, tmp_path, *args) as d:
            before = lease_ips(tool(client, "dora", macs=first_macs, options=PXE_X64))
            assert d.stop(sig=signal.SIGKILL) == -signal.SIGKILL
        assert before[KNOWN_MAC] == the_lab.ip(50)
        assert len(set(before.values())) == len(first_macs)
        db = tmp_path / "state" / "pxelab.sqlite3"
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            rows = dict(conn.execute("SELECT mac, state FROM leases").fetchall())
        assert all(rows.get(mac) == "bound" for mac in first_macs if mac != KNOWN_MAC), rows

        with daemon(the_lab, tmp_path, *args) as d:
            new_macs = [f"52:54:00:dd:01:{i:02x}" for i in range(1, 7)]
            after = lease_ips(tool(client, "dora", macs=new_macs, options=PXE_X64))
            assert not set(after.values()) & set(before.values()), (before, after, d.text())
            # An old client rebooting (INIT-REBOOT) keeps its address; the reservation stays.
            old = first_macs[0]
            (ack,) = tool(client, "request", mac=old, ip=before[old])
            assert ack is not None and ack["options"]["message-type"] == ["5"], d.text()
            assert ack["yiaddr"] == before[old]
            again = lease_ips(tool(client, "dora", macs=[first_macs[1], KNOWN_MAC]))
            assert again == {first_macs[1]: before[first_macs[1]], KNOWN_MAC: the_lab.ip(50)}
            # A stranger rebooting with an address we never gave: not ours to answer.
            (silent,) = tool(client, "request", mac="52:54:00:dd:02:01", ip=the_lab.ip(118), wait=2)
            assert silent is None
            d.wait_for("no record of this client")


# -- proxy mode beside busybox udhcpd -------------------------------------------------------------


def test_proxy_mode_beside_udhcpd(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        other = the_lab.add_client("52:54:00:ee:00:01")
        other.run("ip", "addr", "add", f"{the_lab.ip(2)}/24", "dev", "eth0")
        conf = tmp_path / "udhcpd.conf"
        conf.write_text(
            f"start {the_lab.ip(150)}\nend {the_lab.ip(160)}\ninterface eth0\n"
            f"lease_file {tmp_path / 'udhcpd.leases'}\npidfile {tmp_path / 'udhcpd.pid'}\n"
            f"option subnet 255.255.255.0\noption router {the_lab.ip(2)}\noption lease 600\n"
        )
        udhcpd = other.popen(
            "busybox", "udhcpd", "-f", "-a", "200", str(conf), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with daemon(the_lab, tmp_path, "--dhcp-mode", "proxy", "--unknown-macs", "serve") as d:
                mac = "52:54:00:ee:00:10"
                client = the_lab.add_client(mac)
                replies = tool(client, "collect", mac=mac, options=PXE_X64, sources=2, wait=30)
                by_src = {r["src"]: r for r in replies}
                assert set(by_src) == {the_lab.ip(2), the_lab.server_ip}, (replies, d.text())
                address = by_src[the_lab.ip(2)]
                assert address["file"] == "" and address["yiaddr"].startswith(the_lab.subnet)
                boot = by_src[the_lab.server_ip]
                assert boot["yiaddr"] == "0.0.0.0" and boot["file"] == "ipxe.efi"
                assert boot["options"]["vendor_class_id"] == ["PXEClient"]
                assert boot["options"]["vendor_specific"] == ["060108ff"]
                assert boot["options"]["pxe_client_machine_identifier"] == [PXE_X64[97]]
                assert "lease_time" not in boot["options"]

                # With its address from udhcpd, the client asks pxelab on port 4011.
                client.run("ip", "addr", "add", f"{address['yiaddr']}/24", "dev", "eth0")
                ack = proxy_request(client, mac, address["yiaddr"], the_lab.server_ip)
                assert ack.file == b"ipxe.efi" and ack.yiaddr == ack.siaddr.__class__(0)
                assert ack.option(60) == b"PXEClient"
                # A plain client (no PXEClient) gets nothing from pxelab.
                plain = tool(the_lab.add_client(), "collect", mac="52:54:00:ee:00:11", sources=1)
                assert {r["src"] for r in plain} == {the_lab.ip(2)}
                # pxelab decides in parallel with udhcpd's answer: wait for its decision.
                d.wait_for("not a PXE or HTTP boot client")
        finally:
            udhcpd.terminate()
            udhcpd.wait(timeout=5)


PROXY_REQUEST = """
import socket, sys
from ipaddress import IPv4Address
from pxelab.dhcp.packet import DhcpPacket, Op, build
mac, ciaddr, server = sys.argv[1:4]
req = DhcpPacket(op=Op.BOOTREQUEST, xid=77, ciaddr=IPv4Address(ciaddr),
                 chaddr=bytes.fromhex(mac.replace(":", "")),
                 options=((53, b"\\x03"), (93, b"\\x00\\x07"),
                          (60, b"PXEClient:Arch:00007:UNDI:003016")))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ciaddr, 68)); s.settimeout(30)  # the reply ends the wait
s.sendto(build(req), (server, 4011))
sys.stdout.write(s.recv(2048).hex())
"""


def proxy_request(client: NetNs, mac: str, ciaddr: str, server: str) -> Any:
    from pxelab.dhcp.packet import parse

    proc = subprocess.run(
        client.argv(sys.executable, "-c", PROXY_REQUEST, mac, ciaddr, server),
        cwd=ROOT, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return parse(bytes.fromhex(proc.stdout))


# -- a subnet behind isc-dhcp-relay ----------------------------------------------------------------


def test_relayed_subnet_through_isc_dhcp_relay(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        relay = the_lab.add_client()
        relay.run("ip", "addr", "add", f"{the_lab.ip(254)}/24", "dev", "eth0")
        far = NetNs(f"{the_lab.server.name}-far")
        sh("ip", "netns", "add", far.name)
        the_lab.clients.append(far)  # deleted with the lab
        relay.run(
            "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", far.name
        )
        relay.run("ip", "addr", "add", "10.77.0.1/24", "dev", "eth1")
        relay.run("ip", "link", "set", "eth1", "up")
        far.run("ip", "link", "set", "lo", "up")
        far.run("ip", "link", "set", "eth0", "up")
        the_lab.server.run("ip", "route", "add", "10.77.0.0/24", "via", the_lab.ip(254))
        subnets = "10.77.0.0/24=10.77.0.100-10.77.0.120@10.77.0.1"
        args = ("--dhcp-range", f"{the_lab.ip(100)}-{the_lab.ip(119)}", "--subnets", subnets)
        with daemon(the_lab, tmp_path, *args) as d:
            dhcrelay = relay.popen(
                "dhcrelay", "-d", "-4", "-iu", "eth0", "-id", "eth1", the_lab.server_ip,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                until(lambda: listening(relay, 67), "dhcrelay listening on port 67", dhcrelay)
                script = tmp_path / "udhcpc.sh"
                script.write_text(
                    '#!/bin/sh\n[ "$1" = bound ] && echo "BOUND $ip $router $serverid"\nexit 0\n'
                )
                script.chmod(0o755)
                proc = far.run(
                    "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "20", "-T", "1", "-A", "1",
                    "-s", str(script), timeout=60, check=False,
                )  # fmt: skip
            finally:
                dhcrelay.terminate()
                dhcrelay.wait(timeout=5)
            bound = [line for line in proc.stdout.splitlines() if line.startswith("BOUND ")]
            assert bound, (proc.stdout, proc.stderr, d.text())
            ip, router, server = bound[-1].split()[1:]
            assert 100 <= int(ip.rsplit(".", 1)[1]) <= 120 and ip.startswith("10.77.0.")
            assert router == "10.77.0.1" and server == the_lab.server_ip
            assert f"ACK {ip}" in d.text() and "to 10.77.0.1:67" in d.text()


# -- UEFI HTTP boot and router advertisements -------------------------------------------------------


def test_uefi_http_boot_client_gets_a_url_curl_can_fetch(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        args = ("--dhcp-range", f"{the_lab.ip(100)}-{the_lab.ip(119)}")
        with daemon(the_lab, tmp_path, *args) as d:
            mac = "52:54:00:ff:00:01"
            client = the_lab.add_client(mac)
            (result,) = tool(client, "dora", macs=[mac], options=HTTP_X64)
            ack = result["ack"]
            url = f"http://{the_lab.server_ip}:{d.http_port}/tftp/ipxe.efi"
            assert ack is not None and ack["file"] == url, d.text()
            assert ack["options"]["vendor_class_id"] == ["HTTPClient"]
            client.run("ip", "addr", "add", f"{ack['yiaddr']}/24", "dev", "eth0")
            fetched = tmp_path / "fetched.efi"
            client.run("curl", "-sSf", "-o", str(fetched), url)
            assert fetched.read_bytes() == (tmp_path / "tftp" / "ipxe.efi").read_bytes()
            missing = client.run(
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                f"http://{the_lab.server_ip}:{d.http_port}/tftp/../state/x",
            )
            assert missing.stdout == "404"

            ra = wait_for_ra(client)
            assert ra is not None, d.text()
            assert ra["hlim"] == 255 and ra["routerlifetime"] == 0 and not ra["M"]


def wait_for_ra(client: NetNs, timeout: float = 60) -> Any:
    """Solicit an RA until one comes (once the bridge's link-local address has left DAD)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (ra,) = tool(client, "rs", wait=1.5)
        if ra is not None:
            return ra
    return None


def until(check: Callable[[], bool], what: str, proc: subprocess.Popen[Any] | None = None) -> None:
    """Wait for check() (a positive signal), at most a minute; fail early if proc exits."""
    deadline = time.monotonic() + 60
    while not check():
        assert proc is None or proc.poll() is None, f"{what}: the process exited"
        assert time.monotonic() < deadline, f"no {what} within 60 s"
        time.sleep(0.1)


def listening(ns: NetNs, port: int) -> bool:
    """Whether a UDP socket in ns is bound to `port`."""
    return bool(ns.run("ss", "-Hulnp", f"sport = :{port}").stdout.strip())


def link_local_ready(ns: NetNs, interface: str) -> bool:
    """Whether interface has an IPv6 link-local address that has left DAD (usable to send)."""
    shown = ns.run("ip", "-6", "-o", "addr", "show", "dev", interface, "scope", "link").stdout
    return "fe80::" in shown and "tentative" not in shown


def test_router_advertisements_off(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        args = ("--dhcp-range", f"{the_lab.ip(100)}-{the_lab.ip(119)}")
        with daemon(the_lab, tmp_path, *args, "--router-advertisements", "off") as d:
            client = the_lab.add_client()
            # past DAD on both ends, so silence is pxelab's
            until(lambda: link_local_ready(the_lab.server, the_lab.bridge), "link-local on br0")
            until(lambda: link_local_ready(client, "eth0"), "link-local on the client")
            # a window, as nothing signals a solicitation that got no answer: with RAs on,
            # pxelab answers at once (the test above), so 2 s of silence is no timing luck
            (ra,) = tool(client, "rs", wait=2)
            assert ra is None
            assert "router advertisements on" not in d.text()


# -- pxelab probe ---------------------------------------------------------------------------------


def test_probe_prints_every_offer(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        args = (
            "--dhcp-range",
            f"{the_lab.ip(100)}-{the_lab.ip(119)}",
            "--router",
            the_lab.server_ip,
        )
        with daemon(the_lab, tmp_path, *args) as d:
            client = the_lab.add_client("52:54:00:ab:00:01")
            argv = [sys.executable, "-m", "pxelab", "probe", "--interface", "eth0", "--ipxe",
                    "--http", "--wait", "3"]  # fmt: skip
            proc = subprocess.run(
                client.argv(*argv), cwd=ROOT, capture_output=True, text=True, timeout=60
            )
            out = proc.stdout
            assert proc.returncode == 0, (out, proc.stderr, d.text())
            server = the_lab.server_ip
            assert (
                "PXE (x64 UEFI, arch 7) DISCOVER from 52:54:00:ab:00:01 on eth0: 1 offer(s)" in out
            )
            assert "iPXE DISCOVER from 52:54:00:ab:00:01 on eth0: 1 offer(s)" in out
            assert "HTTPClient (arch 16) DISCOVER from 52:54:00:ab:00:01 on eth0: 1 offer(s)" in out
            assert out.count(f"offer from {server} (server id {server})") == 3
            assert f"address      {the_lab.ip(100)}" in out
            assert "file         ipxe.efi" in out
            assert f"file         http://{server}:{d.http_port}/boot.ipxe" in out
            assert f"option 67 bootfile-name=http://{server}:{d.http_port}/tftp/ipxe.efi" in out
            assert "option 53 message-type=OFFER" in out
            assert f"option 3 router={server}" in out
            assert "option 51 lease-time=3600 s" in out
        # No server: exit 1, and it says there was no offer.
        quiet = subprocess.run(
            client.argv(*argv[:-1], "0.5"), cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert quiet.returncode == 1 and "0 offer(s)" in quiet.stdout


# -- two interfaces at once -----------------------------------------------------------------------


def udhcpc_lease(ns: NetNs, tmp: Path) -> list[str]:
    script = tmp / "udhcpc-bound.sh"
    script.write_text(
        '#!/bin/sh\n[ "$1" = bound ] && echo "BOUND $ip $serverid ${router:--}"\nexit 0\n'
    )
    script.chmod(0o755)
    proc = ns.run(
        "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "20", "-T", "1", "-A", "1",
        "-s", str(script), timeout=60, check=False,
    )  # fmt: skip
    bound = [line for line in proc.stdout.splitlines() if line.startswith("BOUND ")]
    assert bound, (proc.stdout, proc.stderr)
    return bound[-1].split()[1:]


def test_two_interfaces_each_with_its_subnet(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        server = the_lab.server
        server.run("ip", "link", "add", "br1", "type", "bridge")
        server.run("ip", "addr", "add", "10.78.0.1/24", "dev", "br1")
        server.run("ip", "link", "set", "br1", "up")
        other = NetNs(f"{server.name}-br1c")
        sh("ip", "netns", "add", other.name)
        the_lab.clients.append(other)  # deleted with the lab
        server.run("ip", "link", "add", "vbr1", "type", "veth", "peer", "name", "eth0", "netns", other.name)  # fmt: skip
        server.run("ip", "link", "set", "vbr1", "master", "br1", "up")
        other.run("ip", "link", "set", "eth0", "up")
        args = (
            "--dhcp-range", f"{the_lab.ip(100)}-{the_lab.ip(119)}",
            "--dhcp-interfaces", "br1",
            "--subnets", "10.78.0.0/24=10.78.0.100-10.78.0.120@10.78.0.1",
        )  # fmt: skip
        with daemon(the_lab, tmp_path, *args) as d:
            ip, server_id, _ = udhcpc_lease(the_lab.add_client(), tmp_path)
            assert ip.startswith(the_lab.subnet + ".") and server_id == the_lab.server_ip
            ip, server_id, router = udhcpc_lease(other, tmp_path)
            assert ip.startswith("10.78.0.") and 100 <= int(ip.rsplit(".", 1)[1]) <= 120
            assert server_id == "10.78.0.1" and router == "10.78.0.1", d.text()
            # udhcpc sets no broadcast flag: the OFFER and ACK are unicast to yiaddr (RFC 2131
            # 4.1), after pxelab put yiaddr -> chaddr in the ARP table.
            for kind in ("OFFER", "ACK"):
                assert re.search(
                    rf": {kind} {re.escape(ip)} .*to {re.escape(ip)}:68$", d.text(), re.M
                )
            assert "DHCP (full) on br1 port 67: server 10.78.0.1" in d.text()


def test_no_answer_on_an_interface_that_is_not_configured(tmp_path: Path) -> None:
    setup_dirs(tmp_path)
    with lab() as the_lab:
        server = the_lab.server
        server.run("ip", "link", "add", "br1", "type", "bridge")
        server.run("ip", "addr", "add", "10.79.0.1/24", "dev", "br1")
        server.run("ip", "link", "set", "br1", "up")
        stray = NetNs(f"{server.name}-stray")
        sh("ip", "netns", "add", stray.name)
        the_lab.clients.append(stray)  # deleted with the lab
        server.run("ip", "link", "add", "vbr1", "type", "veth", "peer", "name", "eth0", "netns", stray.name)  # fmt: skip
        server.run("ip", "link", "set", "vbr1", "master", "br1", "up")
        stray.run("ip", "link", "set", "eth0", "up")
        args = ("--dhcp-range", f"{the_lab.ip(100)}-{the_lab.ip(119)}")
        with daemon(the_lab, tmp_path, *args) as d:
            mac = "52:54:00:79:00:01"
            assert tool(stray, "collect", mac=mac, options=PXE_X64, wait=2) == []
            answered = tool(the_lab.add_client(), "collect", mac=mac, options=PXE_X64, sources=1)
            assert [r["src"] for r in answered] == [the_lab.server_ip]
            assert d.text().count(f"DISCOVER from {mac}") == 1  # only the one on br0 was seen

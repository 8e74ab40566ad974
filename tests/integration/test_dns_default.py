"""DNS for DHCP clients by default: with `dns` unset, a client that leases from the real daemon
gets the lab host's upstream resolvers (from an injected resolv.conf: only the option's content
is checked, nothing is sent to any resolver); `--dns none` sends none; explain shows the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from tests.netns import Lab, NetNs, lab

pytestmark = pytest.mark.netns

MAC = "52:54:00:d5:00:01"
RESOLV_CONF = """# made by the test
search lab.example
nameserver 127.0.0.1
nameserver 192.0.2.53
nameserver 2001:db8::53
options edns0
nameserver 198.51.100.7
"""


def udhcpc_dns(ns: NetNs, tmp: Path) -> str:
    """The `dns` a busybox udhcpc lease carries (option 6, as udhcpc hands it to its script)."""
    script = tmp / "udhcpc-dns.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] && echo "BOUND ip=$ip dns=$dns."\nexit 0\n')
    script.chmod(0o755)
    proc = ns.run(
        "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-A", "1",
        "-s", str(script), timeout=30, check=False,
    )  # fmt: skip
    bound = [line for line in proc.stdout.splitlines() if line.startswith("BOUND ")]
    assert bound, (proc.stdout, proc.stderr)
    return bound[-1].split("dns=", 1)[1].removesuffix(".").strip()


def _serve(the_lab: Lab, tmp: Path, *extra: str) -> bootlab.Daemon:
    dirs = bootlab.LabDirs(tmp)
    for d in (dirs.hosts, dirs.images, dirs.tftp, dirs.state):
        d.mkdir(parents=True, exist_ok=True)
    (dirs.hosts / "dns1.json").write_text(json.dumps({"name": "dns1", "mac": MAC, "distro": "d"}))
    args = ["--interface", the_lab.bridge, "--dhcp-range", f"{the_lab.ip(100)}-{the_lab.ip(119)}"]
    args += ["--http-port", "0", "--tftp-port", "0", "--router-advertisements", "off", *extra]
    return bootlab.launch(dirs, args, the_lab.server)


def _explain(the_lab: Lab, port: int) -> dict[str, object]:
    url = f"http://{the_lab.server_ip}:{port}/api/explain/{MAC}"
    out = the_lab.server.run("curl", "-sf", url, timeout=20)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_dns_unset_hands_out_the_hosts_upstream_resolvers(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(RESOLV_CONF)
    with lab() as the_lab:
        daemon = _serve(the_lab, tmp_path, "--resolv-conf", str(resolv))
        try:
            assert udhcpc_dns(the_lab.add_client(MAC), tmp_path) == "192.0.2.53 198.51.100.7"
            dhcp = _explain(the_lab, daemon.http_port)["dhcp"]
            assert isinstance(dhcp, dict)
            assert dhcp["dns"] == ["192.0.2.53", "198.51.100.7"]
            assert dhcp["dns_source"] == f"from {resolv}"
        finally:
            assert daemon.stop() == 0
    assert (
        f"DHCP clients get DNS servers: 192.0.2.53, 198.51.100.7 (from {resolv})" in daemon.text()
    )


def test_dns_none_sends_no_server(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(RESOLV_CONF)
    with lab() as the_lab:
        daemon = _serve(the_lab, tmp_path, "--resolv-conf", str(resolv), "--dns", "none")
        try:
            assert udhcpc_dns(the_lab.add_client(MAC), tmp_path) == ""
            dhcp = _explain(the_lab, daemon.http_port)["dhcp"]
            assert isinstance(dhcp, dict) and dhcp["dns"] == []
        finally:
            assert daemon.stop() == 0
    assert "DHCP clients get DNS servers: none: 'dns' is set empty" in daemon.text()

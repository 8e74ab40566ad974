"""Debian's own netboot installer boots from pxelab and acts on the host's preseed.

OVMF (TCG) netboots Debian 12's `linux` and `initrd.gz` (debian-installer-12-netboot-amd64)
through pxelab's DHCP, TFTP and HTTP in a private namespace. The installer takes its address and
DNS server from pxelab's DHCP, fetches `/preseed/<host>` and, following it, looks up the mirror
the host file names: a made-up name that a query-recording DNS server in the namespace sees.
Nothing is forwarded anywhere; the VM stops as soon as that query arrives. The installer's own
log lines (its syslogd, told `log_host=` by the Debian template) are on the host's timeline.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import NetNs, lab
from pxelab.testing.qemu import clean_line, start_x86, tap_netdev

MIRROR = "mirror.pxelab.test"
INSTALL_TIMEOUT = 420  # TCG: the preseed is fetched ~70 s after power-on; room for a loaded CI
# 1 GiB: with 512 MiB the installer stops at its "Entering low memory mode" note


def installer_log(ns: NetNs, mac: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The host's `log` events (its installer's syslog lines), once there are some."""
    deadline = time.monotonic() + timeout
    while True:
        url = f"http://127.0.0.1:8080/api/hosts/{mac}/events?stage=log"
        got = ns.run("curl", "-fsS", url, check=False)
        events: list[dict[str, Any]] = (
            json.loads(got.stdout)["events"] if got.returncode == 0 else []
        )
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


@pytest.mark.netns
@pytest.mark.e2e
def test_debian_installer_fetches_its_preseed_and_asks_for_its_mirror(tmp_path: Path) -> None:
    mac = "52:54:00:de:b1:12"
    with lab() as the_lab:
        host = {
            "name": "deb-inst",
            "mac": mac,
            "ip": the_lab.ip(60),
            "distro": "debian-12",
            "kernel": "linux",
            "initrd": "initrd.gz",
            "mirror": MIRROR,
            "kernel_args": "ipv6.disable=1",  # skips netcfg's IPv6 autoconfiguration wait
        }
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        bootlab.add_debian_installer(dirs)
        dns = bootlab.start_dns(the_lab.server, the_lab.server_ip, tmp_path / "dns")
        try:
            # a router too: without one, the installer's DHCP script stops before it writes the
            # DNS servers, and netcfg asks for them (and whether to go on without a route)
            args = ("--dns", the_lab.server_ip, "--router", the_lab.server_ip)
            daemon = bootlab.start_daemon(the_lab, dirs, *args)
            with bootlab.running(daemon, dns.log) as vms:
                tap = tap_netdev(the_lab.add_tap())
                vm = start_x86(tmp_path / "vm", mac, tap, ns=the_lab.server, memory_mib=1024)
                vms.append(vm)
                query = dns.wait_for_query(MIRROR, INSTALL_TIMEOUT, vm, daemon)
                vm.stop()  # seen: no need to let the installer go on
                assert f"from {the_lab.ip(60)}" in query  # the address pxelab leased it
                lines = installer_log(the_lab.server, mac)  # its syslogd, told by log_host=
                assert lines, daemon.text()
                assert all(e["ip"] == the_lab.ip(60) and e["stage"] == "log" for e in lines)
                apps = {e["app"] for e in lines}
                assert apps & {"main-menu", "netcfg", "anna", "choose-mirror"}, lines
                log = daemon.text()
                preseed = re.search(r"pxelab\.http.*GET /preseed/deb-inst 200", log)
                assert preseed, log
                console = "\n".join(clean_line(line) for line in vm.text().splitlines())
                assert "pxelab: installing deb-inst" in console  # iPXE ran the debian script
        finally:
            dns.stop()
        assert daemon.proc.returncode == 0, daemon.text()
        assert "Traceback" not in daemon.text()
        assert re.search(r"pxelab\.dhcp.*(?i:ack).*" + re.escape(the_lab.ip(60)), daemon.text())
        assert re.search(r"GET /images/debian-12/amd64/initrd\.gz 200", daemon.text())

"""UEFI HTTP boot end to end: OVMF's HTTP boot client gets http://…/tftp/ipxe.efi from pxelab's DHCP.

TFTP is off, so OVMF's PXE attempt fails and it falls back to HTTP boot (option 60 HTTPClient,
arch 16), as firmware does on networks without TFTP. iPXE then boots the test initrd over HTTP.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import lab
from pxelab.testing.qemu import start_x86, tap_netdev

BOOT_TIMEOUT = 300  # TCG, plus OVMF's failed PXE (and PXEv6) attempts before HTTP boot


@pytest.mark.netns
@pytest.mark.e2e
def test_ovmf_http_boot_from_pxelab(tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    mac = "52:54:00:12:34:60"
    with lab() as the_lab:
        host = {
            "name": "http-boot-vm",
            "arch": "x86_64",
            "mac": mac,
            "ip": the_lab.ip(60),
            "distro": "demo",
            "kernel_args": f"quiet pxelab.token={token}",
        }
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        daemon = bootlab.start_daemon(the_lab, dirs, "--tftp-port", "0")
        vm = None
        try:
            tap = the_lab.add_tap()
            vm = start_x86(tmp_path / "vm", mac, tap_netdev(tap), ns=the_lab.server)
            found = vm.wait_for(rf"{MARKER} mac=(\S*) cmdline=(.*)", BOOT_TIMEOUT)
            assert found.group(1) == mac
            assert f"pxelab.token={token}" in found.group(2)
        except BaseException:
            print("---- pxelab log ----\n" + daemon.text())
            if vm is not None:
                print("---- serial log ----\n" + vm.text())
            raise
        finally:
            if vm is not None:
                vm.stop()
            code = daemon.stop()
        log = daemon.text()
        assert code == 0, log
        url = f"http://{the_lab.server_ip}:8080/tftp/ipxe.efi"
        assert re.search(rf"arch x86-64 UEFI HTTP \(16\)\): ACK \S+ file={re.escape(url)}", log), (
            log
        )
        assert re.search(r"pxelab\.http.*GET /tftp/ipxe\.efi 200", log), log
        assert re.search(r"pxelab\.http.*GET /boot\?mac=.* 200 .*http-boot-vm", log), log

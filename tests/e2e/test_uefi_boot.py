"""x86-64 UEFI end to end: OVMF DHCP -> TFTP ipxe.efi -> iPXE DHCP -> HTTP script -> kernel+initrd.

The VM runs the test initrd, which prints its MAC and /proc/cmdline on the serial console.
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

BOOT_TIMEOUT = 240  # TCG: 20-35 s seen, plus iPXE's ~13 s IPv6 wait; room for a loaded CI machine


@pytest.mark.netns
@pytest.mark.e2e
def test_uefi_x86_boots_from_pxelab(tmp_path: Path) -> None:
    token = secrets.token_hex(4)
    mac = "52:54:00:12:34:56"
    with lab() as the_lab:
        host = {
            "name": "uefi-vm",
            "arch": "x86_64",
            "mac": mac.upper(),  # MACs match case-insensitively
            "ip": the_lab.ip(50),
            "distro": "demo",
            "pxeboot": True,
            "kernel_args": f"quiet pxelab.token={token}",
            "role": "worker",  # an unknown key is kept, not an error
        }
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        daemon = bootlab.start_daemon(the_lab, dirs)
        with bootlab.running(daemon) as vms:
            vms.append(
                vm := start_x86(
                    tmp_path / "vm", mac, tap_netdev(the_lab.add_tap()), ns=the_lab.server
                )
            )
            found = vm.wait_for(rf"{MARKER} mac=(\S*) cmdline=(.*)", BOOT_TIMEOUT)
            assert found.group(1) == mac
            cmdline = found.group(2)
            assert f"pxelab.token={token}" in cmdline
            assert "initrd=initrd" in cmdline
        code = daemon.proc.returncode
        log = daemon.text()
        assert code == 0, log
        assert "Traceback" not in log
        # each stage of the path shows in pxelab's log
        assert re.search(r"pxelab\.dhcp.*(?i:ack).*" + re.escape(the_lab.ip(50)), log), log
        assert re.search(r"pxelab\.tftp.*ipxe\.efi", log), log
        assert re.search(r"pxelab\.http.*GET /boot\?mac=.* 200 .*uefi-vm", log), log
        assert re.search(r"pxelab\.http.*GET /images/demo/amd64/vmlinuz 200", log), log
        assert re.search(r"pxelab\.http.*GET /images/demo/amd64/initrd 200", log), log

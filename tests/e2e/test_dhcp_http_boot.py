"""UEFI HTTP boot end to end: OVMF's HTTP boot client gets http://…/tftp/ipxe.efi from pxelab's DHCP.

OVMF's PXE (IPv4 and IPv6) is switched off through fw_cfg and TFTP is off too, so the firmware does
HTTP boot only (option 60 HTTPClient, arch 16), as HTTP-boot-only firmware does. iPXE then boots
the test initrd over HTTP.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import Lab, lab
from pxelab.testing.qemu import OVMF_VARS, QemuVm, tap_netdev, x86_argv

BOOT_TIMEOUT = 240  # TCG: ~30 s seen; room for a loaded CI machine
NO_PXE = ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
          "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]  # fmt: skip


def start_http_boot_vm(workdir: Path, mac: str, tap: str, the_lab: Lab) -> QemuVm:
    """OVMF with PXE off, so its boot manager goes straight to UEFI HTTP boot on the NIC."""
    workdir.mkdir(parents=True, exist_ok=True)
    vars_file, serial = workdir / "OVMF_VARS.fd", workdir / "serial.log"
    shutil.copyfile(OVMF_VARS, vars_file)
    serial.write_bytes(b"")
    argv = x86_argv("uefi", tap_netdev(tap), mac, serial, vars_file=vars_file, nic_rom=False)
    with (workdir / "qemu.stderr").open("wb") as err:
        proc = the_lab.server.popen(
            *argv, *NO_PXE, stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
    return QemuVm(proc, serial)


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
        with bootlab.running(daemon) as vms:
            vms.append(vm := start_http_boot_vm(tmp_path / "vm", mac, the_lab.add_tap(), the_lab))
            found = vm.wait_for(rf"{MARKER} mac=(\S*) cmdline=(.*)", BOOT_TIMEOUT)
            assert found.group(1) == mac
            assert f"pxelab.token={token}" in found.group(2)
        code = daemon.proc.returncode
        log = daemon.text()
        assert code == 0, log
        url = f"http://{the_lab.server_ip}:8080/tftp/ipxe.efi"
        assert re.search(rf"arch x86-64 UEFI HTTP \(16\)\): ACK \S+ file={re.escape(url)}", log), (
            log
        )
        assert re.search(r"pxelab\.http.*GET /tftp/ipxe\.efi 200", log), log
        assert re.search(r"pxelab\.http.*GET /boot\?mac=.* 200 .*http-boot-vm", log), log

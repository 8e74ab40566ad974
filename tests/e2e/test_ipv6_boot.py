"""IPv6-only netboot end to end: no IPv4 on the lab bridge; pxelab sends RAs with the prefix and
answers DHCPv6. OVMF, its IPv4 PXE switched off through fw_cfg, boots the test initrd:

- over PXE on IPv6: DHCPv6 (option 59 `tftp://[addr]/ipxe.efi`), TFTP over IPv6, then iPXE's
  own DHCPv6 (user class iPXE: the /boot.ipxe URL) and HTTP over IPv6;
- over UEFI HTTP boot on IPv6 (PXE off for both families): option 59 `http://[addr]:port/...`.
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

BOOT_TIMEOUT = 300  # TCG; OVMF's HTTP boot first tries IPv4 for ~60 s, iPXE its DHCPv4 ~15 s
NO_PXE4 = ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n"]
NO_PXE6 = ["-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n"]
# Not `opt/org.tianocore/IPv4Support=n`, which would skip OVMF's ~70 s HTTPv4 attempt: then the
# IPv6 stack's own DHCPv6 (started by the RA's M flag) ran when HTTP boot started its own, and
# HTTP boot failed with "Unexpected network error" (seen once with Debian's OVMF 2022.11).


def start_vm(workdir: Path, mac: str, the_lab: Lab, fw_cfg: list[str]) -> QemuVm:
    """OVMF with its own network stack (no NIC ROM) and the given fw_cfg switches."""
    workdir.mkdir(parents=True, exist_ok=True)
    vars_file, serial = workdir / "OVMF_VARS.fd", workdir / "serial.log"
    shutil.copyfile(OVMF_VARS, vars_file)
    serial.write_bytes(b"")
    netdev = tap_netdev(the_lab.add_tap())
    argv = x86_argv("uefi", netdev, mac, serial, vars_file=vars_file, nic_rom=False)
    with (workdir / "qemu.stderr").open("wb") as err:
        proc = the_lab.server.popen(
            *argv, *fw_cfg, stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )
    return QemuVm(proc, serial)


def boot(tmp_path: Path, name: str, mac: str, fw_cfg: list[str], *extra: str) -> tuple[str, str]:
    """Boot one VM on an IPv6-only lab to the marker: (pxelab's log, the lab's prefix)."""
    token = secrets.token_hex(4)
    with lab(ipv4=False, ipv6=True) as the_lab:
        prefix = the_lab.ipv6_prefix
        host = {
            "name": name,
            "arch": "x86_64",
            "mac": mac,
            "ip6": f"{prefix}60",
            "distro": "demo",
            "kernel_args": f"quiet pxelab.token={token}",
        }
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        args = ["--interface", the_lab.bridge, "--ipv6-prefix", f"{prefix}/64", "--http-port"]
        daemon = bootlab.launch(dirs, [*args, "8080", *extra], the_lab.server)
        with bootlab.running(daemon) as vms:
            vms.append(vm := start_vm(tmp_path / "vm", mac, the_lab, fw_cfg))
            found = vm.wait_for(rf"{MARKER} mac=(\S*) cmdline=(.*)", BOOT_TIMEOUT)
            assert found.group(1) == mac
            assert f"pxelab.token={token}" in found.group(2)
        log = daemon.text()
        assert daemon.proc.returncode == 0, log
        assert "Traceback" not in log, log
        assert prefix is not None
        return log, prefix


@pytest.mark.netns
@pytest.mark.e2e
def test_ovmf_pxe_over_ipv6_boots_from_pxelab(tmp_path: Path) -> None:
    log, prefix = boot(tmp_path, "pxe6-vm", "52:54:00:12:36:01", NO_PXE4)
    server = re.escape(f"{prefix}1")
    address = re.escape(f"{prefix}60")
    assert re.search(rf"REPLY {address} url=tftp://\[{server}\]/ipxe\.efi", log), log
    assert re.search(r"pxelab\.tftp.*ipxe\.efi", log), log
    assert re.search(rf"url=http://\[{server}\]:8080/boot\.ipxe \[iPXE client\]", log), log
    assert re.search(r"pxelab\.http.*GET /boot\?mac=.* 200 .*pxe6-vm", log), log
    assert re.search(r"pxelab\.http.*GET /images/demo/amd64/initrd 200", log), log


@pytest.mark.netns
@pytest.mark.e2e
def test_ovmf_http_boot_over_ipv6_from_pxelab(tmp_path: Path) -> None:
    fw_cfg = [*NO_PXE4, *NO_PXE6]
    log, prefix = boot(tmp_path, "http6-vm", "52:54:00:12:36:02", fw_cfg, "--tftp-port", "0")
    server = re.escape(f"{prefix}1")
    url = rf"http://\[{server}\]:8080/tftp/ipxe\.efi"
    assert re.search(rf"REPLY {re.escape(prefix)}60 url={url} \[UEFI HTTP boot\]", log), log
    assert re.search(r"pxelab\.http.*GET /tftp/ipxe\.efi 200", log), log
    assert re.search(r"pxelab\.http.*GET /boot\?mac=.* 200 .*http6-vm", log), log

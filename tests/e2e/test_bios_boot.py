"""Legacy BIOS end to end: SeaBIOS runs QEMU's iPXE NIC ROM, which DHCPs as arch 0 and as iPXE,
so pxelab hands it the HTTP script URL at once; the kernel and initrd come over HTTP.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import pytest

from pxelab.testing.initrd import MARKER
from pxelab.testing.pytest_plugin import PxelabServer
from pxelab.testing.qemu import QemuVm


@pytest.mark.netns
@pytest.mark.e2e
@pytest.mark.pxelab(network="netns")
def test_bios_ipxe_rom_boots_from_pxelab(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]
) -> None:
    token = secrets.token_hex(4)
    mac = "52:54:00:b1:05:01"
    host = pxelab_server.add_host("bios-vm", mac, kernel_args=f"quiet pxelab.token={token}")
    vm = qemu_vm(mac, firmware="bios")
    found = vm.wait_for(rf"{MARKER} mac=(\S*) cmdline=(.*)", timeout=240)
    assert found.group(1) == mac
    assert f"pxelab.token={token}" in found.group(2)
    log = pxelab_server.log
    # the ROM's DHCP: arch 0 (BIOS), already iPXE, so the script URL rather than undionly.kpxe
    assert re.search(
        rf"arch [^)]*\(0\)\): ACK {re.escape(host['ip'])} file=http://\S+/boot\.ipxe", log
    ), log
    assert "undionly.kpxe" not in log
    assert re.search(r"GET /images/demo/amd64/vmlinuz 200", log), log

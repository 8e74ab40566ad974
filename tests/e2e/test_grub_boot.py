"""GRUB as the loader, end to end: an arm64 VM (AAVMF, TCG) through Debian's signed network GRUB,
and an x86-64 VM with Secure Boot on (OVMF with Microsoft's keys) through signed shim and GRUB.
Both read their per-MAC grub.cfg from pxelab's TFTP and load kernel and initrd over TFTP.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import pytest

from pxelab.testing.bootlab import ARM64_GRUB, arm64_root
from pxelab.testing.initrd import MARKER
from pxelab.testing.pytest_plugin import PxelabServer
from pxelab.testing.qemu import QemuVm

pytestmark = [pytest.mark.netns, pytest.mark.e2e, pytest.mark.pxelab(network="netns")]

MARKER_LINE = rf"{MARKER} mac=(\S*) cmdline=(.*)"


def _served(log: str, name: str) -> bool:
    return (
        re.search(rf"pxelab\.tftp: .* RRQ '/?{re.escape(name)}': sent \d+ bytes", log) is not None
    )


def test_arm64_boots_through_signed_grub(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]
) -> None:
    assert (arm64_root() / ARM64_GRUB).is_file(), "scripts/setup.sh unpacks the arm64 inputs"
    token = secrets.token_hex(4)
    mac = "52:54:00:aa:64:01"
    host = pxelab_server.add_host(
        "arm-vm", mac, arch="aarch64", kernel_args=f"quiet pxelab.token={token}"
    )
    vm = qemu_vm(mac, arch="aarch64")
    found = vm.wait_for(MARKER_LINE, timeout=300)
    assert found.group(1) == mac
    assert "console=ttyAMA0" in found.group(2) and f"pxelab.token={token}" in found.group(2)
    log = pxelab_server.log
    # no arm64 iPXE in the TFTP root: arch 11 gets GRUB
    assert re.search(rf"\(11\)\): ACK {re.escape(host['ip'])} file=grubnetaa64\.efi", log), log
    assert _served(log, "grubnetaa64.efi") and _served(log, "grub/grub.cfg"), log
    assert _served(log, f"grub/grub.cfg-01-{mac}"), log
    assert _served(log, "images/demo/arm64/vmlinuz") and _served(log, "images/demo/arm64/initrd"), (
        log
    )


def test_secure_boot_through_shim_and_grub(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]
) -> None:
    token = secrets.token_hex(4)
    mac = "52:54:00:5b:00:01"
    host = pxelab_server.add_host(
        "sb-vm", mac, secure_boot=True, kernel_args=f"pxelab.token={token}"
    )
    vm = qemu_vm(mac, firmware="uefi-secure")
    found = vm.wait_for(MARKER_LINE, timeout=300)
    assert found.group(1) == mac and f"pxelab.token={token}" in found.group(2)
    serial = vm.text()
    # Secure Boot was on: GRUB saw lockdown, and the kernel says so itself
    assert "pxelab: Secure Boot lockdown is on" in serial
    assert re.search(r"[Ss]ecure boot enabled", serial), serial[-3000:]
    log = pxelab_server.log
    assert re.search(rf"\(7\)\): ACK {re.escape(host['ip'])} file=shimx64\.efi", log), log
    assert _served(log, "shimx64.efi") and _served(log, "grubx64.efi"), log
    assert _served(log, f"grub/grub.cfg-01-{mac}"), log
    assert _served(log, "images/demo/amd64/vmlinuz"), log

"""Copy me: a VM network-boots from pxelab in your own test suite (no root needed)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pxelab.testing.pytest_plugin import PxelabServer
from pxelab.testing.qemu import QemuVm

MAC = "52:54:00:12:34:01"


@pytest.mark.pxelab(network="user")  # or network="netns" as root: firmware DHCP + TFTP too
def test_vm_boots_from_pxelab(pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]) -> None:
    # the test kernel and initrd are served as distro "demo"; the initrd prints a marker line
    pxelab_server.add_host("vm1", MAC, kernel_args="quiet example.token=42")
    vm = qemu_vm(MAC)
    found = vm.wait_for(r"PXELAB-BOOT-OK mac=(\S+) cmdline=(.*)", timeout=240)
    assert found.group(1) == MAC
    assert "example.token=42" in found.group(2)
    assert "GET /boot?mac=" in pxelab_server.log

"""Fleets: a VM whose MAC has no host file boots from the profile its MAC prefix matches
(QEMU user-mode network, no root)."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable

import pytest

from pxelab.testing.pytest_plugin import PxelabServer
from pxelab.testing.qemu import QemuVm


@pytest.mark.e2e
@pytest.mark.pxelab(network="user")
def test_profile_with_mac_prefix_boots_a_vm_without_host_file(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]
) -> None:
    pxelab_server.add_profile(
        "lab", {"mac_prefix": "52-54-00-0f"}, kernel_args="quiet pxelab.who=from-profile"
    )
    vm = qemu_vm("52:54:00:0f:00:07")
    found = vm.wait_for(r"PXELAB-BOOT-OK mac=(\S+) cmdline=(.*)", timeout=240)
    assert found.group(1) == "52:54:00:0f:00:07"
    assert "pxelab.who=from-profile" in found.group(2)
    assert not list(pxelab_server.dirs.hosts.glob("*.json"))  # no host file for it
    assert re.search(
        r"GET /boot\?mac=\S+ 200 \d+B \S+ \(host lab-5254000f0007\)", pxelab_server.log
    )
    port = pxelab_server.daemon.http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/explain/52:54:00:0f:00:07") as r:
        explained = json.load(r)
    assert explained["origins"]["kernel_args"].startswith("profile lab (")
    assert explained["origins"]["name"] == "generated from profile lab"

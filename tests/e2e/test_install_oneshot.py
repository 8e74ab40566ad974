"""One-shot install end to end: a VM installs (its initrd POSTs `installed`), then boots locally.

QEMU user-mode network, no root. Boot 1: the generic script runs the test initrd with
`pxelab.install=1`; the initrd gets an address and POSTs to `pxelab.installed_url`. Boot 2, the
same MAC: pxelab serves the local-boot script (iPXE `exit`); the VM has no disk, so the test
checks the served script, the console and the timeline rather than a booted system.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from pxelab.testing.initrd import INSTALLED_MARKER, MARKER
from pxelab.testing.pytest_plugin import PxelabServer
from pxelab.testing.qemu import QemuVm

MAC = "52:54:00:00:1e:01"


def _get(server: PxelabServer, path: str) -> Any:
    url = f"http://127.0.0.1:{server.daemon.http_port}{path}"
    with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
        body = resp.read().decode()
    return json.loads(body) if path.startswith("/api/") else body


def _stages(server: PxelabServer) -> list[str]:
    return [e["stage"] for e in _get(server, f"/api/hosts/{MAC}/events")["events"]]


@pytest.mark.e2e
@pytest.mark.pxelab(network="user")
def test_vm_installs_once_then_boots_from_disk(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]
) -> None:
    pxelab_server.add_host("inst1", MAC, kernel_args="quiet pxelab.install=1")
    first = qemu_vm(MAC)
    installed = first.wait_for(rf"{INSTALLED_MARKER} (\S+)", timeout=240)
    assert installed.group(1) == "ok", first.text()[-2000:]
    found = first.wait_for(rf"{MARKER} mac=(\S+) cmdline=(.*)", timeout=60)
    assert found.group(1) == MAC
    base = f"http://10.0.2.2:{pxelab_server.daemon.http_port}"
    callback = re.escape(f"pxelab.installed_url={base}/api/hosts/{MAC}/installed/0.")
    signed = callback + "[0-9a-f]{32}(?![0-9a-f])"
    assert re.search(signed, found.group(2)), found.group(2)  # signed: no token in the VM
    first.proc.wait(timeout=60)  # the initrd powers off; -no-reboot makes QEMU exit

    host = _get(pxelab_server, f"/api/hosts/{MAC}")
    assert host["state"] == "installed" and host["stage"] == "installed"
    assert _stages(pxelab_server)[:4] == ["script", "kernel", "initrd", "installed"]
    with sqlite3.connect(pxelab_server.dirs.state / "pxelab.sqlite3") as db:  # kept on disk
        row = db.execute("SELECT state FROM install WHERE mac = ?", (MAC,)).fetchone()
    assert row == ("installed",)
    assert f"audit: allowed installed {MAC} by signed callback from 127.0.0.1" in pxelab_server.log

    second = qemu_vm(MAC)
    second.wait_for(r"inst1 \(52:54:00:00:1e:01\) is installed: booting from its local disk", 240)
    deadline = time.monotonic() + 30
    while "local-boot" not in _stages(pxelab_server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _stages(pxelab_server)[-1] == "local-boot"
    assert MARKER not in second.text()  # no kernel was served this time
    script = _get(pxelab_server, f"/boot?mac={MAC}")
    assert script.splitlines()[-1] == "exit" and "kernel" not in script
    assert "(host inst1, installed: local boot)" in pxelab_server.log

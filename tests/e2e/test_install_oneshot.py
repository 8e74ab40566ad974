"""One-shot install end to end: a VM installs (its initrd POSTs `installed`), then boots locally.

QEMU user-mode network, no root. Boot 1: the generic script runs the test initrd with
`pxelab.install=1`; the initrd gets an address and POSTs to `pxelab.installed_url`. Boot 2, the
same MAC, now with a disk: pxelab serves the local-boot script (iPXE `exit`), and the firmware
goes on to the disk and boots the system "installed" there, whose console says so.

The disk is a FAT image QEMU makes from a directory: the test kernel and initrd, and a
`startup.nsh`. Debian's OVMF (OVMF_CODE_4M.fd; not the Secure Boot builds) ends its boot order
with the UEFI Shell, which runs `startup.nsh` from the first FAT file system it finds: that
script boots the kernel from the disk with `pxelab.disk=1`, so the marker line the initrd prints
can only come from the disk (pxelab never serves that argument).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path
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
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm], tmp_path: Path
) -> None:
    pxelab_server.add_host("inst1", MAC, kernel_args="quiet pxelab.install=1")
    first = qemu_vm(MAC)
    installed = first.wait_for(rf"{INSTALLED_MARKER} (\S+)", timeout=240)
    assert installed.group(1) == "ok", first.text()[-2000:]
    found = first.wait_for(rf"{MARKER} mac=(\S+) cmdline=(.*)", timeout=240)
    assert found.group(1) == MAC
    base = f"http://10.0.2.2:{pxelab_server.daemon.http_port}"
    callback = re.escape(f"pxelab.installed_url={base}/api/hosts/{MAC}/installed/0.")
    signed = callback + "[0-9a-f]{32}(?![0-9a-f])"
    assert re.search(signed, found.group(2)), found.group(2)  # signed: no token in the VM
    first.proc.wait(timeout=240)  # the initrd powers off; -no-reboot makes QEMU exit

    host = _get(pxelab_server, f"/api/hosts/{MAC}")
    assert host["state"] == "installed" and host["stage"] == "installed"
    assert _stages(pxelab_server)[:4] == ["script", "kernel", "initrd", "installed"]
    with sqlite3.connect(pxelab_server.dirs.state / "pxelab.sqlite3") as db:  # kept on disk
        row = db.execute("SELECT state FROM install WHERE mac = ?", (MAC,)).fetchone()
    assert row == ("installed",)
    assert f"audit: allowed installed {MAC} by signed callback from 127.0.0.1" in pxelab_server.log

    second = qemu_vm(MAC, disk=_installed_disk(pxelab_server, tmp_path / "disk"))
    second.wait_for(r"inst1 \(52:54:00:00:1e:01\) is installed: booting from its local disk", 240)
    booted = second.wait_for(rf"{MARKER} mac=(\S+) cmdline=(.*)", timeout=240)
    assert booted.group(1) == MAC
    assert "pxelab.disk=1" in booted.group(2).split(), booted.group(2)  # the disk's own system
    assert "pxelab.installed_url" not in booted.group(2)
    stages = _stages(pxelab_server)
    assert "local-boot" in stages[4:], stages
    # no kernel or initrd from pxelab on boot 2: the system came from the disk. (After iPXE exits,
    # OVMF's own HTTP boot client also tries pxelab's /boot.ipxe before the disk; it cannot run
    # an iPXE script, so those requests fail in the firmware and only add `ipxe` events.)
    assert stages.count("kernel") == 1 and stages.count("initrd") == 1, stages
    script = _get(pxelab_server, f"/boot?mac={MAC}")
    assert script.splitlines()[-1] == "exit" and "kernel" not in script
    assert "(host inst1, installed: local boot)" in pxelab_server.log


def _installed_disk(server: PxelabServer, disk: Path) -> Path:
    """A directory QEMU shows as a FAT disk: the test system and the shell script that boots it."""
    (disk / "pxelab").mkdir(parents=True)
    images = server.dirs.images / "demo" / "amd64"
    for name in ("vmlinuz", "initrd"):
        shutil.copyfile(images / name, disk / "pxelab" / name)
    boot = r"fs0:\pxelab\vmlinuz initrd=\pxelab\initrd console=ttyS0 quiet pxelab.disk=1"
    (disk / "startup.nsh").write_text(f"fs0:\r\n{boot}\r\n")
    return disk

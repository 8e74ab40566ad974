"""`pxelab demo`: a private namespace, pxelab serving a demo host, and a QEMU UEFI VM booting from it.

Prints the boot stages as they happen, from pxelab's log and the VM's serial console.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import lab, require_root
from pxelab.testing.qemu import QemuVm, clean_line, start_uefi_x86

DEMO_MAC = "52:54:00:de:30:01"
_KERNEL_NOISE = re.compile(r"^\[\s*\d+\.\d+\]")


class _Follower:
    """New complete lines of a growing file."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, ""

    def lines(self) -> list[str]:
        try:
            with self.path.open("r", errors="replace") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return []
        *done, self.partial = (self.partial + chunk).split("\n")
        return done


def _follow(daemon: bootlab.Daemon, vm: QemuVm, timeout: float) -> str | None:
    logs, serial = _Follower(daemon.log), _Follower(vm.serial_log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in logs.lines():
            print(f"  pxelab | {line.split(' ', 2)[-1]}", flush=True)
        for line in serial.lines():
            text = clean_line(line)
            if text and not _KERNEL_NOISE.match(text):
                print(f"  vm     | {text}", flush=True)
            if MARKER in text:
                return text
        if vm.proc.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def run_demo(timeout: float = 300) -> int:
    """Boot the demo VM once; 0 if it printed the marker."""
    require_root()
    with lab() as the_lab, tempfile.TemporaryDirectory(prefix="pxelab-demo-") as tmp:
        root = Path(tmp)
        host = {
            "name": "demo-vm",
            "arch": "x86_64",
            "mac": DEMO_MAC,
            "ip": the_lab.ip(50),
            "distro": "demo",
            "kernel_args": "quiet pxelab.demo=1",
        }
        print(f"pxelab demo: lab namespace {the_lab.server.name}, bridge {the_lab.subnet}.0/24")
        dirs = bootlab.prepare(root / "lab", [host])
        print(f"pxelab demo: host {host['name']} ({DEMO_MAC}) -> {dirs.hosts}/demo-vm.json")
        daemon = bootlab.start_daemon(the_lab, dirs)
        started = time.monotonic()
        vm = start_uefi_x86(the_lab.server, the_lab.add_tap(), DEMO_MAC, root / "vm")
        print("pxelab demo: QEMU x86-64 UEFI (OVMF) is booting from the network (TCG: ~30-60 s)")
        try:
            marker = _follow(daemon, vm, timeout)
        finally:
            vm.stop()
            daemon.stop()
        if marker is None:
            print(f"pxelab demo: FAILED: no boot marker in {timeout:.0f}s (the logs are above)")
            return 1
        print(f"pxelab demo: booted in {time.monotonic() - started:.1f}s: {marker}")
        return 0

"""`pxelab demo`: pxelab serving a demo host, and a QEMU UEFI VM that network-boots from it.

As root it runs in a private network namespace, so the VM's firmware does DHCP and TFTP with
pxelab; without root it uses QEMU's user-mode network, and the VM boots over HTTP only.
Prints the boot stages as they happen, from pxelab's log and the VM's serial console.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import lab
from pxelab.testing.qemu import QemuVm, clean_line, start_x86, tap_netdev, user_netdev

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


@contextlib.contextmanager
def _started(network: str, root: Path) -> Iterator[tuple[bootlab.Daemon, QemuVm]]:
    host = {"name": "demo-vm", "arch": "x86_64", "mac": DEMO_MAC, "distro": "demo",
            "kernel_args": "quiet pxelab.demo=1"}  # fmt: skip
    if network == "netns":
        with lab() as the_lab:
            print(f"pxelab demo: namespace {the_lab.server.name}, bridge {the_lab.subnet}.0/24")
            dirs = bootlab.prepare(root / "lab", [{**host, "ip": the_lab.ip(50)}])
            daemon = bootlab.start_daemon(the_lab, dirs)
            netdev = tap_netdev(the_lab.add_tap())
            vm = start_x86(root / "vm", DEMO_MAC, netdev, ns=the_lab.server)
            print(
                "pxelab demo: QEMU x86-64 UEFI: OVMF's PXE -> DHCP, TFTP ipxe.efi -> iPXE -> HTTP"
            )
            try:
                yield daemon, vm
            finally:
                vm.stop()
                daemon.stop()
        return
    dirs = bootlab.prepare(root / "lab", [host])
    daemon = bootlab.start_daemon_usernet(dirs)
    url = f"http://10.0.2.2:{daemon.http_port}/boot.ipxe"
    vm = start_x86(root / "vm", DEMO_MAC, user_netdev(url), nic_rom=True)
    print(f"pxelab demo: no root, so QEMU user-mode network: the NIC's iPXE boots {url}")
    try:
        yield daemon, vm
    finally:
        vm.stop()
        daemon.stop()


def run_demo(network: str | None = None, timeout: float = 300) -> int:
    """Boot the demo VM once; 0 if it printed the marker."""
    network = network or ("netns" if os.geteuid() == 0 else "user")
    with tempfile.TemporaryDirectory(prefix="pxelab-demo-") as tmp:
        print(f"pxelab demo: host demo-vm ({DEMO_MAC}), network mode {network!r}")
        started = time.monotonic()
        with _started(network, Path(tmp)) as (daemon, vm):
            print("pxelab demo: booting (software emulation: about 30-60 s)")
            marker = _follow(daemon, vm, timeout)
        if marker is None:
            print(f"pxelab demo: FAILED: no boot marker in {timeout:.0f}s (the logs are above)")
            return 1
        print(f"pxelab demo: booted in {time.monotonic() - started:.1f}s: {marker}")
        return 0

"""Boot time with and without pxelab's router advertisements: OVMF -> iPXE -> test initrd, under
QEMU in a lab namespace. iPXE waits ~13 s for an IPv6 RA when none comes. Not a test: `make bench`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import lab
from pxelab.testing.qemu import start_x86, tap_netdev


def boot_seconds(work: Path, router_advertisements: str) -> tuple[float, float]:
    """Seconds from QEMU start to the initrd's marker, and from iPXE's DHCP ACK to its first HTTP GET."""
    mac = "52:54:00:12:35:01"
    with lab() as the_lab:
        host = {"name": "ra-vm", "mac": mac, "ip": the_lab.ip(70), "distro": "demo"}
        dirs = bootlab.prepare(work / "lab", [host])
        daemon = bootlab.start_daemon(
            the_lab, dirs, "--router-advertisements", router_advertisements
        )
        vm = None
        try:
            tap = the_lab.add_tap()
            started = time.monotonic()
            vm = start_x86(work / "vm", mac, tap_netdev(tap), ns=the_lab.server)
            vm.wait_for(rf"{MARKER} mac=", 400)
            total = time.monotonic() - started
        finally:
            if vm is not None:
                vm.stop()
            daemon.stop()
        text = daemon.text()

        def stamp(pattern: str) -> list[float]:
            return [
                time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1e3
                for m in re.finditer(rf"^(\S+ \S+),(\d+) .*{pattern}", text, re.M)
            ]

        acks, scripts = stamp(r"pxelab\.dhcp: REQUEST .*: ACK"), stamp(r"GET /boot\.ipxe ")
        gap = scripts[0] - acks[-1] if acks and scripts else float("nan")
        return total, gap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="boots per setting")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (namespaces)", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="pxelab-boot-") as tmp:
        for setting in ("on", "off"):
            for run in range(args.runs):
                total, gap = boot_seconds(Path(tmp) / f"{setting}{run}", setting)
                print(f"  RA {setting}: boot {total:.1f} s, iPXE ACK -> GET /boot.ipxe {gap:.1f} s")
                rows.append((setting, total, gap))
    print()
    print("| router advertisements | QEMU start -> initrd | iPXE ACK -> GET /boot.ipxe |")
    print("|---|---|---|")
    for setting, total, gap in rows:
        print(f"| {setting} | {total:.1f} s | {gap:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

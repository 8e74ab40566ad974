"""Boot time: QEMU x86-64 UEFI (OVMF's own PXE client) from power-on to the test initrd's serial
marker, served by pxelab, then by dnsmasq (DHCP + TFTP + RAs) and nginx (HTTP) with the same
files, in a lab namespace. Not a test: bench/run.py (`make bench`) runs it as root.

The dnsmasq stack gets what pxelab does by itself: ipxe.efi to UEFI x86-64 clients, the chain
script URL to iPXE (user class `iPXE`), the host's reserved address, and router advertisements
(`enable-ra`, on an fd42::/64 address; without them iPXE waits ~13 s for IPv6). nginx serves
the images dir and the per-MAC script, rendered by pxelab's renderer for nginx's URL.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Row, emit, nginx, ratio, stop, write_script

from pxelab.boot.render import Renderer
from pxelab.hosts.inventory import Inventory
from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import Lab, lab
from pxelab.testing.qemu import start_x86, tap_netdev

MAC = "52:54:00:12:36:01"
PORT = 8080
TIMEOUT = 240


def boot(the_lab: Lab, work: Path) -> float:
    """Seconds from starting QEMU to the marker on its serial console."""
    tap = the_lab.add_tap()
    start = time.monotonic()
    vm = start_x86(work, MAC, tap_netdev(tap), ns=the_lab.server)
    try:
        vm.wait_for(rf"{MARKER} mac=", TIMEOUT)
        return time.monotonic() - start
    finally:
        vm.stop()


def with_pxelab(work: Path) -> float:
    with lab() as the_lab:
        host = {"name": "boot-vm", "mac": MAC, "ip": the_lab.ip(60), "distro": "demo"}
        dirs = bootlab.prepare(work / "lab", [host])
        daemon = bootlab.start_daemon(the_lab, dirs, http_port=PORT)
        try:
            return boot(the_lab, work / "vm")
        finally:
            daemon.stop()


def with_dnsmasq_nginx(work: Path) -> float:
    with lab() as the_lab:
        ip = the_lab.server_ip
        host = {"name": "boot-vm", "mac": MAC, "ip": the_lab.ip(60), "distro": "demo"}
        dirs = bootlab.prepare(work / "lab", [host])
        base = f"http://{ip}:{PORT}"
        renderer, found = Renderer(), Inventory(dirs.hosts).lookup(MAC)
        assert found is not None
        write_script(dirs.root / "scripts", MAC, renderer.boot_script(found, base))
        (dirs.root / "boot.ipxe").write_text(renderer.chain_script(base))
        the_lab.server.run("ip", "-6", "addr", "add", "fd42::1/64", "dev", the_lab.bridge)
        argv = [
            "dnsmasq", "--no-daemon", "--port=0", f"--interface={the_lab.bridge}",
            "--bind-interfaces", "--user=root", "--no-resolv", "--log-dhcp",
            f"--pid-file={work / 'dnsmasq.pid'}", f"--dhcp-leasefile={work / 'dnsmasq.leases'}",
            f"--dhcp-range={the_lab.ip(100)},{the_lab.ip(199)},255.255.255.0,1h",
            f"--dhcp-host={MAC},{the_lab.ip(60)}",
            "--dhcp-match=set:efi64,option:client-arch,7",
            "--dhcp-match=set:efi64,option:client-arch,9",
            "--dhcp-userclass=set:ipxe,iPXE",
            f"--dhcp-boot=tag:ipxe,{base}/boot.ipxe",
            "--dhcp-boot=tag:efi64,tag:!ipxe,ipxe.efi",
            "--enable-tftp", f"--tftp-root={dirs.tftp}",
            "--enable-ra", f"--dhcp-range=::,constructor:{the_lab.bridge},ra-only",
        ]  # fmt: skip
        log = (work / "dnsmasq.log").open("wb")
        dnsmasq = the_lab.server.popen(*argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(0.5)
            if dnsmasq.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {(work / 'dnsmasq.log').read_text()}")
            with nginx(
                work / "nginx", dirs.root, PORT, address=ip, argv_prefix=the_lab.server.argv()
            ):
                time.sleep(0.5)
                return boot(the_lab, work / "vm")
        finally:
            stop(dnsmasq)
            log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1, help="boots per stack")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"pxelab": [], "dnsmasq+nginx": []}
    with tempfile.TemporaryDirectory(prefix="pxelab-bench-boot-") as tmp:
        for run in range(args.runs):
            for name, fn in (("pxelab", with_pxelab), ("dnsmasq+nginx", with_dnsmasq_nginx)):
                took = fn(Path(tmp) / f"{name}{run}")
                times[name].append(took)
                print(f"  {name}: power-on to marker {took:.1f} s", flush=True)
    p, d = statistics.median(times["pxelab"]), statistics.median(times["dnsmasq+nginx"])
    r = ratio(p, d)
    emit(
        [
            Row(
                "Boot: QEMU UEFI (TCG) power-on to serial marker",
                f"{p:.1f} s",
                f"{d:.1f} s (dnsmasq DHCP+TFTP+RA, nginx HTTP)",
                r,
                "<= 1.0x",
                r is not None and r <= 1.0,
                f"median of {args.runs}; OVMF PXE -> TFTP ipxe.efi -> iPXE -> HTTP script, "
                "kernel, initrd",
            )
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

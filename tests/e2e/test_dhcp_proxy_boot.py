"""proxyDHCP end to end: OVMF gets its address from busybox udhcpd and its boot file from pxelab
in proxy mode (ports 67 and 4011), then iPXE does the same and boots the test initrd.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.initrd import MARKER
from pxelab.testing.netns import lab
from pxelab.testing.qemu import start_x86, tap_netdev

BOOT_TIMEOUT = 240


@pytest.mark.netns
@pytest.mark.e2e
def test_ovmf_boots_with_pxelab_as_proxy_dhcp(tmp_path: Path) -> None:
    mac = "52:54:00:12:34:70"
    with lab() as the_lab:
        other = the_lab.add_client("52:54:00:ee:00:02")
        other.run("ip", "addr", "add", f"{the_lab.ip(2)}/24", "dev", "eth0")
        conf = tmp_path / "udhcpd.conf"
        conf.write_text(
            f"start {the_lab.ip(150)}\nend {the_lab.ip(160)}\ninterface eth0\n"
            f"lease_file {tmp_path / 'udhcpd.leases'}\npidfile {tmp_path / 'udhcpd.pid'}\n"
            f"option subnet 255.255.255.0\noption lease 600\n"
        )
        (tmp_path / "udhcpd.leases").write_bytes(b"")
        udhcpd = other.popen(
            "busybox", "udhcpd", "-f", "-a", "200", str(conf),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        host = {"name": "proxy-vm", "mac": mac, "distro": "demo", "kernel_args": "quiet"}
        dirs = bootlab.prepare(tmp_path / "lab", [host])
        daemon = bootlab.start_daemon(the_lab, dirs, "--dhcp-mode", "proxy")
        vm = None
        try:
            tap = the_lab.add_tap()
            vm = start_x86(tmp_path / "vm", mac, tap_netdev(tap), ns=the_lab.server)
            found = vm.wait_for(rf"{MARKER} mac=(\S*) cmdline=(.*)", BOOT_TIMEOUT)
            assert found.group(1) == mac
        except BaseException:
            print("---- pxelab log ----\n" + daemon.text())
            if vm is not None:
                print("---- serial log ----\n" + vm.text())
            raise
        finally:
            if vm is not None:
                vm.stop()
            code = daemon.stop()
            udhcpd.terminate()
            udhcpd.wait(timeout=5)
        log = daemon.text()
        assert code == 0, log
        assert re.search(r"DISCOVER from .*: OFFER file=ipxe\.efi \[proxyDHCP", log), log
        assert re.search(r"pxelab\.tftp.*ipxe\.efi", log), log
        assert re.search(r"pxelab\.http.*GET /boot\?mac=.* 200 .*proxy-vm", log), log
        assert " ACK " not in log.replace("ACK file=", "")  # pxelab never handed out an address

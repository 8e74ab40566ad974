"""QEMU VMs that network-boot: command lines per firmware, and a handle to wait on the serial log."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pxelab.testing.netns import NetNs, stop_process

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
OVMF_CODE_SECURE = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
"""OVMF with Secure Boot and Microsoft's keys enrolled (with its VARS), so shim is trusted."""
OVMF_VARS_SECURE = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(text: str) -> str:
    """A serial-console line without terminal escapes and control characters."""
    return _ANSI.sub("", text).strip()


def accel() -> str:
    """`kvm` only where the CPU can really run UEFI guests (vmx/svm and /dev/kvm), else `tcg`."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "tcg"
    has_virt = re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M) is not None
    return "kvm" if has_virt and os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"


def tap_netdev(tap: str) -> str:
    """A QEMU -netdev on a tap device (the tests' namespaces: DHCP and TFTP from pxelab)."""
    return f"tap,id=net0,ifname={tap},script=no,downscript=no"


def user_netdev(boot_url: str) -> str:
    """A QEMU user-mode (slirp) -netdev whose DHCP hands out boot_url; needs no root.

    The guest reaches the host's 127.0.0.1 as 10.0.2.2.
    """
    return f"user,id=net0,bootfile={boot_url}"


FIRMWARES = ("uefi", "bios", "uefi-secure")
"""x86-64 firmware: OVMF (UEFI), QEMU's default SeaBIOS, or OVMF with Secure Boot on."""


def x86_argv(
    firmware: str,
    netdev: str,
    mac: str,
    serial_log: Path,
    *,
    vars_file: Path | None,
    nic_rom: bool,
    memory_mib: int = 512,
) -> list[str]:
    """An x86-64 VM booting from a virtio NIC, with OVMF (uefi) or SeaBIOS (bios).

    nic_rom=False (`romfile=`) makes the firmware's own PXE client do DHCP and TFTP, as real
    hardware does (UEFI only: SeaBIOS has no PXE client of its own); nic_rom=True keeps QEMU's
    iPXE ROM, which boots the DHCP boot file over HTTP. memory_mib: the guest's RAM.
    """
    if firmware not in FIRMWARES:
        raise ValueError(f"firmware must be one of {FIRMWARES}, not {firmware!r}")
    device = f"virtio-net-pci,netdev=net0,mac={mac},bootindex=1" + ("" if nic_rom else ",romfile=")
    flash: list[str] = []
    machine = "q35"
    if firmware != "bios":
        if vars_file is None:
            raise ValueError("UEFI needs a writable copy of OVMF_VARS")
        code = OVMF_CODE_SECURE if firmware == "uefi-secure" else OVMF_CODE
        flash = [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}",
        ]  # fmt: skip
    if firmware == "uefi-secure":  # SMM keeps the variable store out of the guest's reach
        machine = "q35,smm=on"
        flash += [
            "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-global", "ICH9-LPC.disable_s3=1",
        ]  # fmt: skip
    return [
        "qemu-system-x86_64",
        "-accel", accel(),
        "-M", machine,
        "-m", str(memory_mib),
        *flash,
        "-netdev", netdev,
        "-device", device,
        "-display", "none",
        "-serial", f"file:{serial_log}",
        "-no-reboot",
    ]  # fmt: skip


@dataclass
class QemuVm:
    """A running VM; its serial console goes to `serial_log`."""

    proc: subprocess.Popen[bytes]
    serial_log: Path
    started: float = field(default_factory=time.monotonic)

    def text(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of pattern in the serial log; TimeoutError with the log's tail if none."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.text())
            if found:
                return found
            if self.proc.poll() is not None or time.monotonic() > deadline:
                why = (
                    f"QEMU exited with {self.proc.returncode}"
                    if self.proc.returncode is not None
                    else f"no match after {timeout:.0f}s"
                )
                tail = "\n".join(clean_line(x) for x in self.text().splitlines()[-40:])
                raise TimeoutError(f"{why} for {pattern!r}; serial log tail:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.proc, timeout=5)


def _launch(argv: list[str], serial: Path, stderr: Path, ns: NetNs | None) -> QemuVm:
    with stderr.open("ab") as err:
        if ns is not None:
            proc = ns.popen(*argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        else:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    return QemuVm(proc, serial)


def start_x86(
    workdir: Path,
    mac: str,
    netdev: str,
    *,
    firmware: str = "uefi",
    ns: NetNs | None = None,
    nic_rom: bool = False,
    memory_mib: int = 512,
) -> QemuVm:
    """Boot an x86-64 VM (in namespace ns, if given) from the network, with memory_mib of RAM."""
    if shutil.which("qemu-system-x86_64") is None:
        raise FileNotFoundError("qemu-system-x86_64 is missing: install qemu-system-x86 and ovmf")
    workdir.mkdir(parents=True, exist_ok=True)
    tag = mac.replace(":", "")
    vars_file = None
    if firmware != "bios":
        vars_file = workdir / f"OVMF_VARS-{tag}.fd"
        shutil.copyfile(OVMF_VARS_SECURE if firmware == "uefi-secure" else OVMF_VARS, vars_file)
    serial = workdir / f"serial-{tag}.log"
    serial.write_bytes(b"")
    argv = x86_argv(
        firmware, netdev, mac, serial, vars_file=vars_file, nic_rom=nic_rom, memory_mib=memory_mib
    )
    return _launch(argv, serial, workdir / f"qemu-{tag}.stderr", ns)


def aarch64_argv(netdev: str, mac: str, vars_file: Path, serial_log: Path) -> list[str]:
    """arm64 UEFI (AAVMF) on QEMU's virt machine, under TCG, booting from a virtio NIC with the
    firmware's own PXE client (`romfile=`); the console is ttyAMA0."""
    return [
        "qemu-system-aarch64",
        "-M", "virt",
        "-cpu", "cortex-a57",
        "-m", "512",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}",
        "-netdev", netdev,
        "-device", f"virtio-net-pci,netdev=net0,mac={mac},bootindex=1,romfile=",
        "-display", "none",
        "-serial", f"file:{serial_log}",
        "-no-reboot",
    ]  # fmt: skip


def start_aarch64(workdir: Path, mac: str, netdev: str, *, ns: NetNs | None = None) -> QemuVm:
    """Boot an arm64 UEFI VM (in namespace ns, if given) from the network."""
    if shutil.which("qemu-system-aarch64") is None or not AAVMF_CODE.is_file():
        raise FileNotFoundError(
            "qemu-system-aarch64 or AAVMF is missing: install qemu-system-arm and qemu-efi-aarch64"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    tag = mac.replace(":", "")
    vars_file = workdir / f"AAVMF_VARS-{tag}.fd"
    shutil.copyfile(AAVMF_VARS, vars_file)
    serial = workdir / f"serial-{tag}.log"
    serial.write_bytes(b"")
    argv = aarch64_argv(netdev, mac, vars_file, serial)
    return _launch(argv, serial, workdir / f"qemu-{tag}.stderr", ns)

"""Which first-stage loaders the TFTP root holds, followed while the daemon runs, and the boot
files that makes DHCP and DHCPv6 hand out (GRUB for arm64 unless `ipxe-arm64.efi` is there)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from pxelab.dhcp.arch import BootFiles, Firmware

log = logging.getLogger("pxelab.loaders")

LOADER_FILES = (
    "undionly.kpxe",
    "ipxe.efi",
    "snponly.efi",
    "ipxe-arm64.efi",
    "shimx64.efi",
    "grubx64.efi",
    "grubnetaa64.efi",
)
"""The loaders looked for in the TFTP root (the names `pxelab assets loaders` and `ipxe` use)."""


def present_loaders(tftp_root: Path) -> frozenset[str]:
    """The LOADER_FILES that are regular files in the TFTP root (blocking: stats each one); one
    that cannot be looked at (no such root, no permission) counts as absent."""
    present = set()
    for name in LOADER_FILES:
        try:
            if stat.S_ISREG(os.stat(tftp_root / name).st_mode):
                present.add(name)
        except OSError:
            continue
    return frozenset(present)


def boot_files_for(present: frozenset[str]) -> BootFiles:
    """The default boot files, but GRUB for arm64 unless an arm64 iPXE is present. Pure."""
    arm64_ipxe = BootFiles().uefi_arm64
    return BootFiles() if arm64_ipxe in present else BootFiles(uefi_arm64=None)


BootFilesListener = Callable[[BootFiles], None]
"""Told the new boot files when the loaders change (a DHCP or DHCPv6 server)."""


class LoaderWatch:
    """The loaders in one TFTP root and the boot files they mean. `scan` (blocking: run it in a
    worker thread) looks again; after a scan that saw a change, `publish` (on the event loop,
    where the DHCP servers live) hands the new boot files to every listener."""

    def __init__(self, tftp_root: Path) -> None:
        self.tftp_root = tftp_root
        self.present: frozenset[str] | None = None
        """The loaders found by the last scan (None before the first)."""
        self.boot_files = boot_files_for(frozenset())
        """The boot files of the last scan (read from any thread: one reference)."""
        self._listeners: list[BootFilesListener] = []

    def scan(self) -> bool:
        """Look at the TFTP root again; True when the loaders changed since the last scan (the
        first scan changes nothing). A change is logged in one line."""
        present = present_loaders(self.tftp_root)
        before = self.present
        if present == before:
            return False
        self.present, self.boot_files = present, boot_files_for(present)
        if before is None:
            return False
        gained, lost = sorted(present - before), sorted(before - present)
        what = "; ".join(
            part
            for part in (
                f"added {', '.join(gained)}" if gained else "",
                f"removed {', '.join(lost)}" if lost else "",
            )
            if part
        )
        arm64 = self.boot_files.for_firmware(Firmware.UEFI_ARM64)
        log.info(
            "boot loaders in %s changed: %s; now %s; arm64 UEFI gets %s",
            self.tftp_root,
            what,
            ", ".join(sorted(present)) or "none",
            arm64,
        )
        return True

    def subscribe(self, listener: BootFilesListener) -> None:
        """Tell `listener` the boot files at each `publish`."""
        self._listeners.append(listener)

    def publish(self) -> None:
        """Hand the current boot files to every listener (call on the event loop)."""
        for listener in list(self._listeners):
            listener(self.boot_files)

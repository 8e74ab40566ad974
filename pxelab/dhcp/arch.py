"""Client architecture (DHCP option 93, RFC 4578 and the IANA registry) -> firmware -> boot file.

Unknown codes map to None: the caller logs them and serves no boot file, it never fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Firmware(StrEnum):
    """The firmware families pxelab has a boot file for."""

    BIOS = "bios"
    UEFI_IA32 = "uefi-ia32"
    UEFI_X64 = "uefi-x64"
    UEFI_ARM32 = "uefi-arm32"
    UEFI_ARM64 = "uefi-arm64"


@dataclass(frozen=True)
class ClientArch:
    """One option 93 value that pxelab knows how to boot."""

    code: int
    """The 16-bit architecture type from option 93."""
    firmware: Firmware
    """Which firmware family (and so which boot file) it means."""
    http: bool
    """UEFI HTTP boot: the boot file is an http:// URL and option 60 must say "HTTPClient"."""
    label: str
    """A short human name for logs."""


_KNOWN = (
    ClientArch(0, Firmware.BIOS, False, "x86 BIOS"),
    ClientArch(6, Firmware.UEFI_IA32, False, "x86 UEFI"),
    # 7 is x64 UEFI and 9 is officially EFI byte code, but firmware uses both for x64.
    ClientArch(7, Firmware.UEFI_X64, False, "x86-64 UEFI"),
    ClientArch(9, Firmware.UEFI_X64, False, "x86-64 UEFI"),
    ClientArch(10, Firmware.UEFI_ARM32, False, "ARM32 UEFI"),
    ClientArch(11, Firmware.UEFI_ARM64, False, "ARM64 UEFI"),
    ClientArch(15, Firmware.UEFI_IA32, True, "x86 UEFI HTTP"),
    ClientArch(16, Firmware.UEFI_X64, True, "x86-64 UEFI HTTP"),
    ClientArch(18, Firmware.UEFI_ARM32, True, "ARM32 UEFI HTTP"),
    ClientArch(19, Firmware.UEFI_ARM64, True, "ARM64 UEFI HTTP"),
)

ARCHES: dict[int, ClientArch] = {arch.code: arch for arch in _KNOWN}
"""Option 93 value -> what it means, for the values pxelab can boot."""


def client_arch(code: int) -> ClientArch | None:
    """The architecture for an option 93 value, or None when pxelab has nothing for it."""
    return ARCHES.get(code)


def first_known(codes: tuple[int, ...]) -> ClientArch | None:
    """The first value of an option 93 list that pxelab knows (clients list preferred first)."""
    for code in codes:
        arch = ARCHES.get(code)
        if arch is not None:
            return arch
    return None


@dataclass(frozen=True)
class BootFiles:
    """Boot file (a path on the TFTP root) per firmware family; None means none is served."""

    bios: str | None = "undionly.kpxe"
    """x86 BIOS PXE (option 93 = 0, or no option 93 but option 60 "PXEClient")."""
    uefi_x64: str | None = "ipxe.efi"
    """x86-64 UEFI (7, 9; 16 over HTTP)."""
    uefi_arm64: str | None = "ipxe-arm64.efi"
    """ARM64 UEFI (11; 19 over HTTP)."""
    uefi_ia32: str | None = None
    """32-bit x86 UEFI (6; 15 over HTTP)."""
    uefi_arm32: str | None = None
    """32-bit ARM UEFI (10; 18 over HTTP)."""

    def for_firmware(self, firmware: Firmware) -> str | None:
        """The configured boot file for `firmware`, or None."""
        match firmware:
            case Firmware.BIOS:
                return self.bios
            case Firmware.UEFI_X64:
                return self.uefi_x64
            case Firmware.UEFI_ARM64:
                return self.uefi_arm64
            case Firmware.UEFI_IA32:
                return self.uefi_ia32
            case Firmware.UEFI_ARM32:
                return self.uefi_arm32

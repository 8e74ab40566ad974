"""Client architecture (DHCP option 93, RFC 4578 and the IANA registry) -> firmware -> boot file,
and the spellings of a machine architecture (host files, the asset catalog, the images cache).

Unknown codes map to None: the caller logs them and serves no boot file, it never fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ARCH_ALIASES = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}
"""Accepted spellings of a machine architecture, mapped to the one pxelab uses (pvmlab's)."""

IMAGE_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
"""pxelab's architecture name -> Debian's, used by the images cache and the asset catalog."""


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

IANA_NAMES: dict[int, str] = {
    0: "x86 BIOS",
    1: "NEC/PC98 (deprecated)",
    2: "Itanium",
    3: "DEC Alpha (deprecated)",
    4: "Arc x86 (deprecated)",
    5: "Intel Lean Client (deprecated)",
    6: "x86 UEFI",
    7: "x64 UEFI",
    8: "EFI Xscale (deprecated)",
    9: "EBC",
    10: "ARM 32-bit UEFI",
    11: "ARM 64-bit UEFI",
    12: "PowerPC Open Firmware",
    13: "PowerPC ePAPR",
    14: "POWER OPAL v3",
    15: "x86 UEFI HTTP",
    16: "x64 UEFI HTTP",
    17: "EBC HTTP",
    18: "ARM 32-bit UEFI HTTP",
    19: "ARM 64-bit UEFI HTTP",
    20: "PC/AT BIOS HTTP",
    21: "ARM 32-bit U-Boot",
    22: "ARM 64-bit U-Boot",
    23: "ARM 32-bit U-Boot HTTP",
    24: "ARM 64-bit U-Boot HTTP",
    25: "RISC-V 32-bit UEFI",
    26: "RISC-V 32-bit UEFI HTTP",
    27: "RISC-V 64-bit UEFI",
    28: "RISC-V 64-bit UEFI HTTP",
    29: "RISC-V 128-bit UEFI",
    30: "RISC-V 128-bit UEFI HTTP",
    31: "s390 Basic",
    32: "s390 Extended",
    33: "MIPS 32-bit UEFI",
    34: "MIPS 64-bit UEFI",
    35: "Sunway 32-bit UEFI",
    36: "Sunway 64-bit UEFI",
    37: "LoongArch 32-bit UEFI",
    38: "LoongArch 32-bit UEFI HTTP",
    39: "LoongArch 64-bit UEFI",
    40: "LoongArch 64-bit UEFI HTTP",
    41: "ARM rpiboot",
}
"""The IANA "Processor Architecture Types" registry (RFC 4578 §2.1 and later additions)."""


def iana_name(code: int) -> str:
    """The registry's name for an option 93 value, or "unassigned" for codes it does not list."""
    return IANA_NAMES.get(code, "unassigned")


def vendor_class_arch(vendor_class: bytes) -> int | None:
    """The architecture in an option 60 "PXEClient:Arch:00007:..." string, or None."""
    for prefix in (b"PXEClient:Arch:", b"HTTPClient:Arch:"):
        if vendor_class.startswith(prefix):
            digits = vendor_class[len(prefix) : len(prefix) + 5]
            if len(digits) == 5 and digits.isdigit():
                return int(digits)
    return None


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
    grub_x64: str | None = "shimx64.efi"
    """x86-64 UEFI hosts whose loader is GRUB: Debian's signed shim, which loads grubx64.efi
    from the same TFTP directory (so Secure Boot works)."""
    grub_arm64: str | None = "grubnetaa64.efi"
    """ARM64 UEFI hosts whose loader is GRUB (Debian's signed network GRUB)."""

    def for_firmware(self, firmware: Firmware, loader: str | None = None) -> str | None:
        """The boot file for `firmware`: GRUB's when loader is "grub", else iPXE's; with no
        loader given, iPXE's if one is configured, else GRUB's (arm64 without an iPXE build)."""
        grub = {Firmware.UEFI_X64: self.grub_x64, Firmware.UEFI_ARM64: self.grub_arm64}
        if loader == "grub":
            return grub.get(firmware)
        ipxe = self._ipxe(firmware)
        return ipxe if ipxe is not None or loader == "ipxe" else grub.get(firmware)

    def _ipxe(self, firmware: Firmware) -> str | None:
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

"""Fill the TFTP root with iPXE binaries: Debian's x86 builds, other architectures from a path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pxelab.assets import AssetError
from pxelab.files import copy_atomic

DEBIAN_IPXE = Path("/usr/lib/ipxe")
"""Where Debian's `ipxe` package puts its binaries."""
DEBIAN_FILES = ("ipxe.efi", "snponly.efi", "undionly.kpxe")
"""x86-64 UEFI (all NICs), x86-64 UEFI (the firmware's NIC driver), BIOS (PXE UNDI)."""
ARM64_NAME = "ipxe-arm64.efi"
"""The name pxelab's DHCP hands to ARM64 UEFI clients (option 93 = 11)."""


@dataclass(frozen=True)
class Installed:
    """One binary copied into the TFTP root."""

    name: str
    """Its name in the TFTP root."""
    source: Path
    """Where it was copied from."""
    size: int
    """Bytes."""


def install_ipxe(
    tftp_root: Path,
    debian_dir: Path = DEBIAN_IPXE,
    arm64: Path | None = None,
    extra: tuple[Path, ...] = (),
) -> list[Installed]:
    """Copy Debian's iPXE files, an ARM64 build (as ipxe-arm64.efi) and extra files.

    AssetError names the missing file before anything is copied.
    """
    plan: list[tuple[Path, str]] = [(debian_dir / name, name) for name in DEBIAN_FILES]
    if arm64 is not None:
        plan.append((arm64, ARM64_NAME))
    plan.extend((path, path.name) for path in extra)
    for src, _ in plan:
        if not src.is_file():
            hint = " (apt-get install ipxe)" if src.parent == DEBIAN_IPXE else ""
            raise AssetError(f"{src}: no such file{hint}")
    done = []
    for src, name in plan:
        try:
            size = copy_atomic(src, tftp_root / name)
        except OSError as exc:
            raise AssetError(f"{src} -> {tftp_root / name}: {exc.strerror or exc}") from None
        done.append(Installed(name, src, size))
    return done

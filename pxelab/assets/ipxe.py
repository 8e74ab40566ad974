"""Fill the TFTP root with boot loaders: Debian's x86 iPXE builds (other architectures from a
path), and Debian's signed shim and GRUB under the names pxelab's DHCP hands out."""

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


@dataclass(frozen=True)
class Loader:
    """One boot loader pxelab serves, and where Debian installs it."""

    name: str
    """Its name in the TFTP root (the name DHCP hands out, see pxelab.dhcp.arch.BootFiles)."""
    source: str
    """Its path in Debian's package, relative to `/`."""
    package: str
    """The Debian package that installs it."""
    purpose: str
    """What boots with it."""


DEBIAN_LOADERS = (
    Loader("ipxe.efi", "usr/lib/ipxe/ipxe.efi", "ipxe", "x86-64 UEFI (iPXE)"),
    Loader(
        "snponly.efi", "usr/lib/ipxe/snponly.efi", "ipxe", "x86-64 UEFI (iPXE, firmware NIC driver)"
    ),
    Loader("undionly.kpxe", "usr/lib/ipxe/undionly.kpxe", "ipxe", "x86 BIOS (iPXE)"),
    Loader(
        "shimx64.efi",
        "usr/lib/shim/shimx64.efi.signed",
        "shim-signed",
        "x86-64 Secure Boot and GRUB hosts: signed shim",
    ),
    Loader(
        "grubx64.efi",
        "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
        "grub-efi-amd64-signed",
        "x86-64: signed network GRUB, loaded by shim",
    ),
    Loader(
        "grubnetaa64.efi",
        "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed",
        "grub-efi-arm64-signed",
        "arm64 UEFI: signed network GRUB (no arm64 iPXE needed)",
    ),
)
"""Every loader `pxelab assets loaders` copies, in the order it reports them."""


@dataclass(frozen=True)
class LoaderReport:
    """What `install_loaders` did: the loaders copied, and those whose package is missing."""

    copied: tuple[Installed, ...]
    """Copied into the TFTP root."""
    missing: tuple[Loader, ...]
    """Not installed on this machine (their Debian package says what to install)."""


def install_loaders(tftp_root: Path, root: Path = Path("/")) -> LoaderReport:
    """Copy every loader of DEBIAN_LOADERS that `root` has into the TFTP root, renamed to the
    name pxelab serves; the missing ones are reported, not fatal. AssetError when a copy fails."""
    copied, missing = [], []
    for loader in DEBIAN_LOADERS:
        src = root / loader.source
        if not src.is_file():
            missing.append(loader)
            continue
        try:
            size = copy_atomic(src, tftp_root / loader.name)
        except OSError as exc:
            raise AssetError(f"{src} -> {tftp_root / loader.name}: {exc.strerror or exc}") from None
        copied.append(Installed(loader.name, src, size))
    return LoaderReport(tuple(copied), tuple(missing))


def install_hint(loader: Loader) -> str:
    """How to get a missing loader's package on a Debian machine."""
    if loader.package.endswith("arm64-signed"):
        return (
            f"apt-get install {loader.package} on an arm64 machine; elsewhere "
            f"`dpkg --add-architecture arm64 && apt-get update && apt-get download "
            f"{loader.package}:arm64`, `dpkg-deb -x` it into a directory and pass it as --root"
        )
    return f"apt-get install {loader.package}"

"""Option 93 table: every listed code maps to the right firmware; unknown codes map to None."""

from __future__ import annotations

import pytest

from pxelab.dhcp.arch import BootFiles, Firmware, client_arch, first_known


@pytest.mark.parametrize(
    ("code", "firmware", "http", "file"),
    [
        (0, Firmware.BIOS, False, "undionly.kpxe"),
        (6, Firmware.UEFI_IA32, False, None),
        (7, Firmware.UEFI_X64, False, "ipxe.efi"),
        (9, Firmware.UEFI_X64, False, "ipxe.efi"),
        (10, Firmware.UEFI_ARM32, False, None),
        (11, Firmware.UEFI_ARM64, False, "ipxe-arm64.efi"),
        (15, Firmware.UEFI_IA32, True, None),
        (16, Firmware.UEFI_X64, True, "ipxe.efi"),
        (18, Firmware.UEFI_ARM32, True, None),
        (19, Firmware.UEFI_ARM64, True, "ipxe-arm64.efi"),
    ],
)
def test_known_codes(code: int, firmware: Firmware, http: bool, file: str | None) -> None:
    arch = client_arch(code)
    assert arch is not None
    assert (arch.firmware, arch.http) == (firmware, http)
    assert BootFiles().for_firmware(arch.firmware) == file


@pytest.mark.parametrize("code", [1, 2, 3, 8, 12, 17, 20, 42, 0xFFFF])
def test_unknown_codes_are_none(code: int) -> None:
    assert client_arch(code) is None


def test_first_known_skips_unknown_codes() -> None:
    found = first_known((42, 11, 7))
    assert found is not None and found.code == 11
    assert first_known((42,)) is None
    assert first_known(()) is None

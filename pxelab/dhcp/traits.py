"""What a DHCP request shows of the machine that sent it (architecture, firmware, address),
for profiles' selectors and the list of machines seen. Pure.
"""

from __future__ import annotations

from pxelab.dhcp.arch import Firmware, first_known
from pxelab.dhcp.options import client_arch_codes, is_ipxe
from pxelab.dhcp.packet import ZERO_IP, DhcpPacket
from pxelab.errors import MalformedPacket


def client_traits(request: DhcpPacket, source: str) -> tuple[str | None, str | None, str]:
    """(arch, firmware, address): `x86_64`/`aarch64`, `bios`/`uefi`/`uefi-http` (None for
    iPXE's own rounds, which do not tell the firmware), and ciaddr or the source address."""
    address = str(request.ciaddr) if request.ciaddr != ZERO_IP else ""
    if not address and request.giaddr == ZERO_IP and source not in ("0.0.0.0", ""):
        address = source
    try:
        codes = client_arch_codes(request)
    except MalformedPacket:
        codes = None
    known = first_known(codes) if codes is not None else None
    if known is None:
        return None, None, address
    arch = "aarch64" if known.firmware in (Firmware.UEFI_ARM64, Firmware.UEFI_ARM32) else "x86_64"
    if is_ipxe(request):
        return arch, None, address
    if known.firmware is Firmware.BIOS:
        return arch, "bios", address
    return arch, "uefi-http" if known.http else "uefi", address

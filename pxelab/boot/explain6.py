"""The DHCPv6 part of `pxelab explain`: the boot file URL (option 59) each kind of client would
get over IPv6, asked of the real DHCPv6 policy (`dhcp6.core.choose_boot`) so it cannot drift.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp6.context import Dhcp6Context
from pxelab.dhcp6.core import choose_boot
from pxelab.dhcp6.options import ENTERPRISE_PXE, encode_opaque_list, encode_vendor_class
from pxelab.dhcp6.packet import Dhcp6Message, MessageType, OptionCode
from pxelab.hosts.inventory import Host


def solicit(option61: int | None, vendor_class: bytes, ipxe: bool) -> Dhcp6Message:
    """A SOLICIT as a client of that kind sends it (the parts the boot choice reads)."""
    options: list[tuple[int, bytes]] = [
        (OptionCode.VENDOR_CLASS, encode_vendor_class(ENTERPRISE_PXE, [vendor_class]))
    ]
    if option61 is not None:
        options.append((OptionCode.CLIENT_ARCH_TYPE, struct.pack("!H", option61)))
    if ipxe:
        options.append((OptionCode.USER_CLASS, encode_opaque_list([b"iPXE"])))
    return Dhcp6Message(MessageType.SOLICIT, 0, tuple(options))


def dhcp6_answers(
    host: Host,
    clients: list[tuple[str, int | None, bytes, bool]],
    server_ip: IPv6Address,
    http_port: int,
    boot_files: BootFiles,
) -> dict[str, Any]:
    """The host's IPv6 address and, per (client name, option 61, vendor class, iPXE), its URL."""
    ctx = Dhcp6Context(
        server_duid=b"",
        server_ip=server_ip,
        prefix=IPv6Network(f"{server_ip}/128"),
        pool_start=server_ip,
        pool_end=server_ip,
        http_port=http_port,
        boot_files=boot_files,
    )
    answers = []
    for name, option61, vendor_class, ipxe in clients:
        choice = choose_boot(solicit(option61, vendor_class, ipxe), ctx, host)
        answers.append({"client": name, "boot_file_url": choice.file, "note": choice.note})
    return {
        "address": str(host.ip6) if host.ip6 else "from the pool",
        "server": str(server_ip),
        "answers": answers,
    }

"""Building replies, shared by full and proxy mode: the outcome types, the boot file choice, the
BOOTREPLY header, OFFER/ACK and NAK, and where each goes (RFC 2131 §4.1). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from pxelab.dhcp.arch import BootFiles, first_known, iana_name, vendor_class_arch
from pxelab.dhcp.context import (
    CLIENT_PORT,
    IPXE_SCRIPT,
    LIMITED_BROADCAST,
    PXE_PORT,
    SERVER_PORT,
    TFTP_OVER_HTTP,
    BootHostInfo,
    DhcpContext,
    HostInfo,
)
from pxelab.dhcp.leases import Lease
from pxelab.dhcp.options import (
    client_arch_codes,
    encode_ip,
    encode_ips,
    encode_text,
    encode_u32,
    is_ipxe,
    vendor_class,
)
from pxelab.dhcp.packet import (
    BROADCAST_FLAG,
    FILE_SIZE,
    ZERO_IP,
    DhcpPacket,
    MessageType,
    Op,
    OptionCode,
)
from pxelab.errors import MalformedPacket


@dataclass(frozen=True)
class DhcpReply:
    """A message to send and where to send it."""

    packet: DhcpPacket
    """The OFFER, ACK or NAK."""
    destination: tuple[str, int]
    """UDP (address, port) per RFC 2131 §4.1."""
    note: str = ""
    """Why the boot file is what it is (or why there is none) when not obvious, for the log."""
    link_unicast: bool = False
    """The client has no address yet: the sender must map `destination` to `chaddr` (ARP) first,
    or else broadcast to (LIMITED_BROADCAST, CLIENT_PORT)."""
    changes: tuple[Lease, ...] = ()
    """Lease records changed in deciding it: the store must hold them before the reply is sent."""


@dataclass(frozen=True)
class NoReply:
    """Nothing is sent back; `reason` says why (or what was done, for RELEASE and DECLINE)."""

    reason: str
    """One line for the log."""
    changes: tuple[Lease, ...] = ()
    """Lease records changed all the same (RELEASE, DECLINE, an offer dropped), for the store."""


@dataclass(frozen=True)
class BootChoice:
    """The boot file for one client, and why."""

    file: str | None
    """Boot file name or URL, None for "give an address only"."""
    http_client: bool
    """UEFI HTTP boot: the reply must carry option 60 "HTTPClient"."""
    note: str
    """What decided it when that is not plain from the architecture, for the log."""


def describe_arch(request: DhcpPacket) -> str:
    """The client's architecture for logs, e.g. "x86-64 UEFI (7)", "unknown (42)" or "none"."""
    try:
        codes = client_arch_codes(request)
    except MalformedPacket:
        return "invalid option 93"
    if codes is None:
        return "none"
    arch = first_known(codes)
    if arch is None:
        names = ", ".join(f"{code} {iana_name(code)}" for code in codes)
        return f"unknown ({names})"
    return f"{arch.label} ({arch.code})"


def choose_boot(request: DhcpPacket, ctx: DhcpContext, host: HostInfo | None) -> BootChoice:
    """Pick the boot file: none, the iPXE script URL, or the binary for the client's firmware."""
    if host is not None and not host.pxeboot:
        return BootChoice(None, False, f"pxeboot is off for host {host.name}")
    if is_ipxe(request):
        return BootChoice(ctx.url(IPXE_SCRIPT), False, "iPXE client")
    try:
        codes = client_arch_codes(request)
    except MalformedPacket as exc:
        return BootChoice(None, False, f"no boot file: {exc}")
    vendor = vendor_class(request)
    from_vendor = vendor_class_arch(vendor)
    note = ""
    if codes is None:
        if from_vendor is not None:
            codes = (from_vendor,)
            note = f"arch {from_vendor} from option 60"
        elif vendor.startswith(b"PXEClient"):
            codes = (0,)
            note = "PXEClient without option 93: BIOS"
        else:
            return BootChoice(None, False, "not a PXE client")
    elif from_vendor is not None and from_vendor not in codes:
        note = f"option 60 says arch {from_vendor}, option 93 wins"
    return boot_for_arch(codes, host, ctx.boot_files, ctx.url, note)


def boot_for_arch(
    codes: tuple[int, ...],
    host: BootHostInfo | None,
    boot_files: BootFiles,
    url: Callable[[str], str],
    note: str,
    tftp: Callable[[str], str] = str,
) -> BootChoice:
    """The boot file for the first known architecture in `codes` (option 93 or 61), the host's
    loader considered: an HTTP URL (made by `url`) for UEFI HTTP boot, else a TFTP name (made
    into what the reply carries by `tftp`: DHCPv6 wants a tftp:// URL). Shared by DHCP and
    DHCPv6."""
    arch = first_known(codes)
    if arch is None:
        listed = ", ".join(f"{code} {iana_name(code)}" for code in codes)
        return BootChoice(None, False, f"no boot file: unknown client architecture {listed}")
    loader = None if host is None else host.loader or ("grub" if host.secure_boot else None)
    name = boot_files.for_firmware(arch.firmware, None if arch.http else loader)
    if name is None:
        return BootChoice(None, False, f"no boot file configured for {arch.label}")
    if arch.http:
        return BootChoice(url(TFTP_OVER_HTTP + name), True, note or "UEFI HTTP boot")
    return BootChoice(tftp(name), False, note)


def boot_options(
    request: DhcpPacket, ctx: DhcpContext, host: HostInfo | None
) -> tuple[list[tuple[int, bytes]], bytes, BootChoice]:
    """Options 60/66/67 and the `file` field for the client's boot file (none when it gets none)."""
    boot = choose_boot(request, ctx, host)
    options: list[tuple[int, bytes]] = []
    file = b""
    if boot.file is not None:
        if boot.http_client:
            options.append((OptionCode.VENDOR_CLASS_ID, b"HTTPClient"))
        options.append((OptionCode.TFTP_SERVER_NAME, encode_text(str(ctx.server_ip))))
        encoded = encode_text(boot.file)
        options.append((OptionCode.BOOTFILE_NAME, encoded))
        file = encoded if len(encoded) < FILE_SIZE else b""  # too long: option 67 only
    return options, file, boot


def answer(
    request: DhcpPacket,
    ctx: DhcpContext,
    host: HostInfo | None,
    kind: MessageType,
    yiaddr: IPv4Address | None,
    changes: tuple[Lease, ...] = (),
) -> DhcpReply:
    """An OFFER or ACK; `yiaddr` None is the ACK to an INFORM (no address, no lease time)."""
    options: list[tuple[int, bytes]] = [
        (OptionCode.MESSAGE_TYPE, bytes((kind,))),
        (OptionCode.SERVER_ID, encode_ip(ctx.server_ip)),
    ]
    if yiaddr is not None:
        options.append((OptionCode.LEASE_TIME, encode_u32(ctx.lease_time)))
    options.append((OptionCode.SUBNET_MASK, encode_ip(ctx.network.netmask)))
    if ctx.router is not None:
        options.append((OptionCode.ROUTER, encode_ip(ctx.router)))
    if ctx.dns:
        options.append((OptionCode.DNS_SERVERS, encode_ips(ctx.dns)))
    if ctx.log_server:
        options.append((OptionCode.LOG_SERVERS, encode_ip(ctx.server_ip)))
    boot_opts, file, boot = boot_options(request, ctx, host)
    options.extend(boot_opts)
    packet = bootreply(
        request,
        kind,
        options,
        yiaddr=yiaddr if yiaddr is not None else ZERO_IP,
        siaddr=ctx.server_ip,
        file=file,
    )
    destination, link_unicast = destination_for(request, packet.yiaddr)
    return DhcpReply(packet, destination, boot.note, link_unicast, changes)


def bootreply(
    request: DhcpPacket,
    kind: MessageType,
    options: Sequence[tuple[int, bytes]],
    *,
    yiaddr: IPv4Address = ZERO_IP,
    siaddr: IPv4Address = ZERO_IP,
    file: bytes = b"",
    flags: int | None = None,
) -> DhcpPacket:
    """The BOOTREPLY to request: xid, flags, chaddr and giaddr echoed, ciaddr only in an ACK."""
    return DhcpPacket(
        op=Op.BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags if flags is None else flags,
        ciaddr=request.ciaddr if kind is MessageType.ACK else ZERO_IP,
        yiaddr=yiaddr,
        siaddr=siaddr,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        file=file,
        options=tuple(options),
    )


def nak(request: DhcpPacket, ctx: DhcpContext, why: str) -> DhcpReply:
    """A NAK: broadcast on the segment, or to the relay with the broadcast flag set."""
    relayed = request.giaddr != ZERO_IP
    options = [
        (OptionCode.MESSAGE_TYPE, bytes((MessageType.NAK,))),
        (OptionCode.SERVER_ID, encode_ip(ctx.server_ip)),
        (OptionCode.MESSAGE, encode_text(why)),
    ]
    flags = request.flags | BROADCAST_FLAG if relayed else request.flags
    packet = bootreply(request, MessageType.NAK, options, flags=flags)
    destination = (
        (str(request.giaddr), SERVER_PORT) if relayed else (LIMITED_BROADCAST, CLIENT_PORT)
    )
    return DhcpReply(packet, destination, why)


def destination_for(request: DhcpPacket, yiaddr: IPv4Address) -> tuple[tuple[str, int], bool]:
    """RFC 2131 §4.1 for OFFER/ACK: relay, else ciaddr, else broadcast flag, else yiaddr by chaddr.

    The second value says the reply goes to an address the client does not answer ARP for yet
    (yiaddr): the sender must add the chaddr mapping itself, or broadcast.
    """
    if request.giaddr != ZERO_IP:
        return (str(request.giaddr), SERVER_PORT), False
    if request.ciaddr != ZERO_IP:
        return (str(request.ciaddr), CLIENT_PORT), False
    if request.broadcast or yiaddr == ZERO_IP or request.htype != 1 or request.hlen != 6:
        return (LIMITED_BROADCAST, CLIENT_PORT), False
    return (str(yiaddr), CLIENT_PORT), True


def proxy_destination(
    request: DhcpPacket, port: int, source: tuple[str, int] | None
) -> tuple[str, int]:
    """Where a proxyDHCP reply goes: the relay; else, for a request to port 4011, its source (PXE
    spec: a boot server answers where the request came from) or its ciaddr; else broadcast."""
    if request.giaddr != ZERO_IP:
        return str(request.giaddr), SERVER_PORT
    if port == PXE_PORT:
        if source is not None:
            return source
        if request.ciaddr != ZERO_IP:
            return str(request.ciaddr), CLIENT_PORT
    return LIMITED_BROADCAST, CLIENT_PORT

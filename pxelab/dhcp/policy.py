"""What the DHCP server answers: `decide(request, ctx, hosts, leases, now)` -> a reply or nothing.

Pure: the only state touched is the lease table passed in. `evaluate` also says why nothing is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from pxelab.dhcp.arch import BootFiles, first_known, iana_name, vendor_class_arch
from pxelab.dhcp.leases import LeaseState, LeaseTable
from pxelab.dhcp.options import (
    client_arch_codes,
    encode_ip,
    encode_ips,
    encode_text,
    encode_u32,
    ip_option,
    is_ipxe,
    message_type,
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
from pxelab.errors import ConfigError, MalformedPacket

SERVER_PORT, CLIENT_PORT, PXE_PORT = 67, 68, 4011
LIMITED_BROADCAST = "255.255.255.255"
IPXE_SCRIPT = "boot.ipxe"
"""The HTTP path (under the server root) that iPXE clients are sent to instead of a binary."""
TFTP_OVER_HTTP = "tftp/"
"""The HTTP path prefix under which the TFTP root is served, for UEFI HTTP boot clients."""


class DhcpMode(StrEnum):
    """`full`: addresses and boot information; `proxy`: boot information only, beside another server."""

    FULL = "full"
    PROXY = "proxy"


class UnknownMacs(StrEnum):
    """What to do with a client whose MAC is not in the inventory."""

    SERVE = "serve"
    IGNORE = "ignore"


class HostInfo(Protocol):
    """What the DHCP policy reads from an inventory host."""

    @property
    def name(self) -> str:
        """The host's name, for log lines."""
        ...

    @property
    def ip(self) -> IPv4Address | None:
        """Its reserved address, or None to give it one from the pool."""
        ...

    @property
    def pxeboot(self) -> bool:
        """False: give it an address but no boot file (it boots from disk)."""
        ...

    @property
    def loader(self) -> str | None:
        """`ipxe`, `grub`, or None to let the firmware decide (see BootFiles.for_firmware)."""
        ...

    @property
    def secure_boot(self) -> bool:
        """True: it boots with Secure Boot, so it needs the signed shim and GRUB."""
        ...


class HostLookup(Protocol):
    """The inventory as the DHCP policy sees it."""

    def lookup(self, mac: str) -> HostInfo | None:
        """The host with this MAC (lowercase "aa:bb:..."), or None when unknown."""
        ...

    def reserved(self) -> Mapping[IPv4Address, str]:
        """Every reserved address and the MAC it is reserved for."""
        ...


@dataclass(frozen=True)
class DhcpContext:
    """Everything the DHCP policy needs to know about this server and one subnet it serves."""

    server_ip: IPv4Address
    """This server's address on the served interface: server id, siaddr, option 66."""
    network: IPv4Network
    """The served subnet; option 1 is its netmask."""
    pool_start: IPv4Address
    """First address handed to hosts without a reservation."""
    pool_end: IPv4Address
    """Last address of the pool, inclusive."""
    router: IPv4Address | None = None
    """Default gateway (option 3), or None to send none."""
    dns: tuple[IPv4Address, ...] = ()
    """DNS servers (option 6); empty sends none."""
    lease_time: int = 3600
    """Seconds a binding lasts (option 51)."""
    http_port: int = 80
    """Port of pxelab's HTTP server, used in the URLs given to iPXE and UEFI HTTP clients."""
    boot_files: BootFiles = field(default_factory=BootFiles)
    """Boot file per firmware family."""
    offer_hold: float = 60.0
    """Seconds an offered address stays reserved for the client waiting to REQUEST it."""
    mode: DhcpMode = DhcpMode.FULL
    """Full DHCP, or proxyDHCP (boot information only; the pool is not used)."""
    unknown_macs: UnknownMacs = UnknownMacs.SERVE
    """Whether clients missing from the inventory are answered at all."""
    relayed: bool = False
    """The subnet is reached through relays (giaddr), so `server_ip` is not in it."""

    def __post_init__(self) -> None:
        net = self.network
        keys = (
            ("pool_start", "pool_end") if self.relayed else ("server_ip", "pool_start", "pool_end")
        )
        for key in keys:
            if getattr(self, key) not in net:
                raise ConfigError(f"dhcp {key} {getattr(self, key)} is not in network {net}")
        if self.pool_end < self.pool_start:
            raise ConfigError(
                f"dhcp pool_end {self.pool_end} is before pool_start {self.pool_start}"
            )
        if net.prefixlen < 31:
            for edge in (net.network_address, net.broadcast_address):
                if self.pool_start <= edge <= self.pool_end:
                    raise ConfigError(f"dhcp pool {self.pool_start}-{self.pool_end} holds {edge}")
        if not 0 < self.lease_time < 2**32 - 1:
            raise ConfigError(f"dhcp lease_time {self.lease_time} is not a positive 32-bit count")
        if not 0 < self.http_port < 65536:
            raise ConfigError(f"dhcp http_port {self.http_port} is not a TCP port")

    def url(self, path: str) -> str:
        """An http:// URL on pxelab's HTTP server."""
        return f"http://{self.server_ip}:{self.http_port}/{path.lstrip('/')}"


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
    """The client has no address yet: the sender must map `destination` to `chaddr` (ARP) first."""


@dataclass(frozen=True)
class NoReply:
    """Nothing is sent back; `reason` says why (or what was done, for RELEASE and DECLINE)."""

    reason: str
    """One line for the log."""


@dataclass(frozen=True)
class BootChoice:
    """The boot file for one client, and why."""

    file: str | None
    """Boot file name or URL, None for "give an address only"."""
    http_client: bool
    """UEFI HTTP boot: the reply must carry option 60 "HTTPClient"."""
    note: str
    """What decided it when that is not plain from the architecture, for the log."""


def decide(
    request: DhcpPacket,
    ctx: DhcpContext,
    hosts: HostLookup,
    leases: LeaseTable,
    now: float,
    *,
    port: int = SERVER_PORT,
) -> DhcpReply | None:
    """The reply to `request`, or None to send nothing (`evaluate` gives the reason)."""
    outcome = evaluate(request, ctx, hosts, leases, now, port=port)
    return outcome if isinstance(outcome, DhcpReply) else None


def evaluate(
    request: DhcpPacket,
    ctx: DhcpContext,
    hosts: HostLookup,
    leases: LeaseTable,
    now: float,
    *,
    port: int = SERVER_PORT,
) -> DhcpReply | NoReply:
    """Like `decide`, but a request that gets no reply comes back as NoReply(reason).

    `port` is the UDP port the request arrived on (4011 is the proxyDHCP boot server port).
    """
    if request.op is not Op.BOOTREQUEST:
        return NoReply("a BOOTREPLY, not a client request")
    if request.hlen == 0:
        return NoReply("no hardware address (hlen 0)")
    if request.giaddr != ZERO_IP and request.giaddr not in ctx.network:
        return NoReply(f"relayed by {request.giaddr}, outside {ctx.network}")
    if ctx.unknown_macs is UnknownMacs.IGNORE and hosts.lookup(request.mac) is None:
        return NoReply(f"{request.mac} is not in the inventory (unknown_macs = ignore)")
    try:
        kind = message_type(request)
        if kind is None:
            return NoReply("no message type (option 53): plain BOOTP is not served")
        if ctx.mode is DhcpMode.PROXY:
            from pxelab.dhcp.proxy import proxy_reply

            return proxy_reply(request, kind, ctx, hosts, port)
        if port == PXE_PORT:
            return NoReply("port 4011 is only served in proxy mode")
        if kind is MessageType.DISCOVER:
            return _discover(request, ctx, hosts, leases, now)
        if kind is MessageType.REQUEST:
            return _request(request, ctx, hosts, leases, now)
        if kind is MessageType.RELEASE:
            return _release(request, ctx, leases, now)
        if kind is MessageType.DECLINE:
            return _decline(request, ctx, leases, now)
        if kind is MessageType.INFORM:
            return _inform(request, ctx, hosts)
        return NoReply(f"{kind.name} is a server message")
    except MalformedPacket as exc:
        return NoReply(f"malformed: {exc}")


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
    arch = first_known(codes)
    if arch is None:
        listed = ", ".join(f"{code} {iana_name(code)}" for code in codes)
        return BootChoice(None, False, f"no boot file: unknown client architecture {listed}")
    loader = None if host is None else host.loader or ("grub" if host.secure_boot else None)
    name = ctx.boot_files.for_firmware(arch.firmware, None if arch.http else loader)
    if name is None:
        return BootChoice(None, False, f"no boot file configured for {arch.label}")
    if arch.http:
        return BootChoice(ctx.url(TFTP_OVER_HTTP + name), True, note or "UEFI HTTP boot")
    return BootChoice(name, False, note)


def _discover(
    request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup, leases: LeaseTable, now: float
) -> DhcpReply | NoReply:
    # Leases are keyed by chaddr, not option 61: firmware and iPXE can send different client
    # ids for one NIC (a UUID, then the MAC), and one boot would then take two addresses.
    host = hosts.lookup(request.mac)
    reservation = _reservation(host, ctx)
    lease = leases.offer(
        request.mac,
        now,
        reserved=hosts.reserved(),
        reservation=reservation,
        requested=ip_option(request, OptionCode.REQUESTED_IP),
    )
    if lease is None:
        if reservation is not None:
            return NoReply(f"reserved address {reservation} cannot be offered")
        return NoReply(f"no free address in pool {ctx.pool_start}-{ctx.pool_end}")
    return _answer(request, ctx, host, MessageType.OFFER, lease.ip)


def _request(
    request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup, leases: LeaseTable, now: float
) -> DhcpReply | NoReply:
    """RFC 2131 §4.3.2: SELECTING (server id), INIT-REBOOT (option 50), RENEWING/REBINDING (ciaddr)."""
    server_id = ip_option(request, OptionCode.SERVER_ID)
    requested = ip_option(request, OptionCode.REQUESTED_IP)
    mac = request.mac
    if server_id is not None and server_id != ctx.server_ip:
        # The client chose another server's offer: drop ours.
        held = leases.get(mac, now)
        if held is not None and held.state is LeaseState.OFFERED:
            leases.release(mac, held.ip, now)
        return NoReply(f"REQUEST for server {server_id}, not this one")
    if server_id is not None:
        state = "SELECTING"
        ip = requested if requested is not None else request.ciaddr
    elif requested is not None and request.ciaddr == ZERO_IP:
        state, ip = "INIT-REBOOT", requested
    else:
        state, ip = ("RENEWING" if not request.broadcast else "REBINDING"), request.ciaddr
    if ip == ZERO_IP:
        return NoReply("REQUEST names no address (neither option 50 nor ciaddr)")
    if ip not in ctx.network:
        if state == "REBINDING":
            return NoReply(f"REBINDING {ip} is not on network {ctx.network}")
        return _nak(request, ctx, f"{ip} is not on network {ctx.network}")
    host = hosts.lookup(mac)
    reservation = _reservation(host, ctx)
    if server_id is None and reservation is None:
        # Not authoritative for clients we have no record of: another server may own them.
        held = leases.get(mac, now)
        other = leases.holder(ip, now)
        if held is None and other is not None:
            return _nak(request, ctx, f"{ip} is held by another client")
        if held is None:
            return NoReply(f"{state} {mac} for {ip}: no record of this client")
        if held.ip != ip:
            return _nak(request, ctx, f"{mac} holds {held.ip}, not {ip}")
    lease = leases.bind(
        mac, ip, now, ctx.lease_time, reserved=hosts.reserved(), reservation=reservation
    )
    if lease is None:
        if reservation is not None and ip != reservation:
            return _nak(request, ctx, f"{mac} is reserved {reservation}, not {ip}")
        return _nak(request, ctx, f"{ip} is not available to {mac}")
    return _answer(request, ctx, host, MessageType.ACK, lease.ip)


def _release(request: DhcpPacket, ctx: DhcpContext, leases: LeaseTable, now: float) -> NoReply:
    server_id = ip_option(request, OptionCode.SERVER_ID)
    if server_id is not None and server_id != ctx.server_ip:
        return NoReply(f"RELEASE for server {server_id}, not this one")
    if leases.release(request.mac, request.ciaddr, now) is None:
        return NoReply(f"RELEASE of {request.ciaddr}, which {request.mac} does not hold")
    return NoReply(f"released {request.ciaddr}")


def _decline(request: DhcpPacket, ctx: DhcpContext, leases: LeaseTable, now: float) -> NoReply:
    server_id = ip_option(request, OptionCode.SERVER_ID)
    if server_id is not None and server_id != ctx.server_ip:
        return NoReply(f"DECLINE for server {server_id}, not this one")
    ip = ip_option(request, OptionCode.REQUESTED_IP)
    if ip is None or leases.decline(request.mac, ip, now) is None:
        return NoReply(f"DECLINE of {ip}, which {request.mac} does not hold")
    return NoReply(f"{ip} declined (in use elsewhere), held back for {leases.decline_hold:g} s")


def _inform(request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup) -> DhcpReply | NoReply:
    if request.ciaddr == ZERO_IP:
        return NoReply("INFORM without ciaddr")
    host = hosts.lookup(request.mac)
    return _answer(request, ctx, host, MessageType.ACK, None)


def _reservation(host: HostInfo | None, ctx: DhcpContext) -> IPv4Address | None:
    """The host's reserved address, if it has one on the served network."""
    if host is None or host.ip is None or host.ip not in ctx.network:
        return None
    return host.ip


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


def _answer(
    request: DhcpPacket,
    ctx: DhcpContext,
    host: HostInfo | None,
    kind: MessageType,
    yiaddr: IPv4Address | None,
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
    return DhcpReply(packet, destination, boot.note, link_unicast)


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


def _nak(request: DhcpPacket, ctx: DhcpContext, why: str) -> DhcpReply:
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

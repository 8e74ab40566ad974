"""What the DHCP server answers: `decide(request, ctx, hosts, leases, now)` -> a reply or nothing.

Pure: the only state touched is the lease table passed in. `evaluate` also says why nothing is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from pxelab.dhcp.arch import ARCHES, BootFiles, ClientArch, first_known
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

SERVER_PORT, CLIENT_PORT = 67, 68
LIMITED_BROADCAST = "255.255.255.255"
IPXE_SCRIPT = "boot.ipxe"
"""The HTTP path (under the server root) that iPXE clients are sent to instead of a binary."""


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
    """Everything the DHCP policy needs to know about this server and its subnet."""

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

    def __post_init__(self) -> None:
        net = self.network
        for key in ("server_ip", "pool_start", "pool_end"):
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
    request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup, leases: LeaseTable, now: float
) -> DhcpReply | None:
    """The reply to `request`, or None to send nothing (`evaluate` gives the reason)."""
    outcome = evaluate(request, ctx, hosts, leases, now)
    return outcome if isinstance(outcome, DhcpReply) else None


def evaluate(
    request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup, leases: LeaseTable, now: float
) -> DhcpReply | NoReply:
    """Like `decide`, but a request that gets no reply comes back as NoReply(reason)."""
    if request.op is not Op.BOOTREQUEST:
        return NoReply("a BOOTREPLY, not a client request")
    if request.hlen == 0:
        return NoReply("no hardware address (hlen 0)")
    if request.giaddr != ZERO_IP and request.giaddr not in ctx.network:
        return NoReply(f"relayed by {request.giaddr}, outside {ctx.network}")
    try:
        kind = message_type(request)
        if kind is None:
            return NoReply("no message type (option 53): plain BOOTP is not served")
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
        return f"unknown ({', '.join(map(str, codes))})"
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
    arch: ClientArch | None
    note = ""
    if codes is None:
        if not vendor_class(request).startswith(b"PXEClient"):
            return BootChoice(None, False, "not a PXE client")
        arch, note = ARCHES[0], "PXEClient without option 93: BIOS"
    else:
        arch = first_known(codes)
        if arch is None:
            listed = ", ".join(map(str, codes))
            return BootChoice(None, False, f"no boot file: unknown client architecture {listed}")
    name = ctx.boot_files.for_firmware(arch.firmware)
    if name is None:
        return BootChoice(None, False, f"no boot file configured for {arch.label}")
    if arch.http:
        return BootChoice(ctx.url(name), True, "UEFI HTTP boot")
    return BootChoice(name, False, note)


def _discover(
    request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup, leases: LeaseTable, now: float
) -> DhcpReply | NoReply:
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
    server_id = ip_option(request, OptionCode.SERVER_ID)
    requested = ip_option(request, OptionCode.REQUESTED_IP)
    mac = request.mac
    if server_id is not None and server_id != ctx.server_ip:
        # The client chose another server's offer (RFC 2131 §4.3.2): drop ours.
        held = leases.get(mac, now)
        if held is not None and held.state is LeaseState.OFFERED:
            leases.release(mac, held.ip, now)
        return NoReply(f"REQUEST for server {server_id}, not this one")
    ip = requested if requested is not None else request.ciaddr
    if ip == ZERO_IP:
        return NoReply("REQUEST names no address (neither option 50 nor ciaddr)")
    if ip not in ctx.network:
        return _nak(request, ctx, f"{ip} is not on network {ctx.network}")
    # Authoritative for this subnet: an INIT-REBOOT or REBINDING client we have no record of
    # gets its address if it is free, and a NAK otherwise.
    host = hosts.lookup(mac)
    reservation = _reservation(host, ctx)
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
    boot = choose_boot(request, ctx, host)
    file = b""
    if boot.file is not None:
        if boot.http_client:
            options.append((OptionCode.VENDOR_CLASS_ID, b"HTTPClient"))
        options.append((OptionCode.TFTP_SERVER_NAME, encode_text(str(ctx.server_ip))))
        options.append((OptionCode.BOOTFILE_NAME, encode_text(boot.file)))
        encoded = encode_text(boot.file)
        file = encoded if len(encoded) < FILE_SIZE else b""  # too long: option 67 only
    packet = DhcpPacket(
        op=Op.BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags,
        ciaddr=request.ciaddr if kind is MessageType.ACK else ZERO_IP,
        yiaddr=yiaddr if yiaddr is not None else ZERO_IP,
        siaddr=ctx.server_ip,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        file=file,
        options=tuple(options),
    )
    return DhcpReply(packet, _destination(request), boot.note)


def _nak(request: DhcpPacket, ctx: DhcpContext, why: str) -> DhcpReply:
    """A NAK: broadcast on the segment, or to the relay with the broadcast flag set."""
    relayed = request.giaddr != ZERO_IP
    packet = DhcpPacket(
        op=Op.BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags | BROADCAST_FLAG if relayed else request.flags,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        options=(
            (OptionCode.MESSAGE_TYPE, bytes((MessageType.NAK,))),
            (OptionCode.SERVER_ID, encode_ip(ctx.server_ip)),
            (OptionCode.MESSAGE, encode_text(why)),
        ),
    )
    destination = (
        (str(request.giaddr), SERVER_PORT) if relayed else (LIMITED_BROADCAST, CLIENT_PORT)
    )
    return DhcpReply(packet, destination, why)


def _destination(request: DhcpPacket) -> tuple[str, int]:
    """RFC 2131 §4.1: relay, else the client's own address, else broadcast.

    A client without an address is always answered by broadcast, even without the broadcast
    flag: unicasting to yiaddr would need an ARP entry the client cannot answer yet.
    """
    if request.giaddr != ZERO_IP:
        return str(request.giaddr), SERVER_PORT
    if request.ciaddr != ZERO_IP:
        return str(request.ciaddr), CLIENT_PORT
    return LIMITED_BROADCAST, CLIENT_PORT

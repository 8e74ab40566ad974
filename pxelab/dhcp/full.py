"""Full DHCP (RFC 2131): addresses from the pool or the inventory's reservations, and boot files.

Pure: the only state touched is the lease table passed in; every record it changes is returned
with the outcome, for the adapter to store before it sends the reply.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from pxelab.dhcp.context import DhcpContext, HostInfo, HostLookup
from pxelab.dhcp.leases import LeaseState, LeaseTable
from pxelab.dhcp.options import ip_option
from pxelab.dhcp.packet import ZERO_IP, DhcpPacket, MessageType, OptionCode
from pxelab.dhcp.reply import DhcpReply, NoReply, answer, nak


def full_reply(
    request: DhcpPacket,
    kind: MessageType,
    ctx: DhcpContext,
    hosts: HostLookup,
    leases: LeaseTable,
    now: float,
) -> DhcpReply | NoReply:
    """The full-mode answer to one request on port 67 (`kind` is its option 53)."""
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


def _discover(
    request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup, leases: LeaseTable, now: float
) -> DhcpReply | NoReply:
    # Leases are keyed by chaddr, not option 61: firmware and iPXE can send different client
    # ids for one NIC (a UUID, then the MAC), and one boot would then take two addresses.
    host = hosts.lookup(request.mac)
    reservation = _reservation(host, ctx)
    grant = leases.offer(
        request.mac,
        now,
        reserved=hosts.reserved(),
        reservation=reservation,
        requested=ip_option(request, OptionCode.REQUESTED_IP),
    )
    if grant is None:
        if reservation is not None:
            return NoReply(f"reserved address {reservation} cannot be offered")
        return NoReply(f"no free address in pool {ctx.pool_start}-{ctx.pool_end}")
    return answer(request, ctx, host, MessageType.OFFER, grant.lease.ip, grant.changes)


def _request(
    request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup, leases: LeaseTable, now: float
) -> DhcpReply | NoReply:
    """RFC 2131 §4.3.2: SELECTING (server id), INIT-REBOOT (option 50), RENEWING/REBINDING (ciaddr)."""
    server_id = ip_option(request, OptionCode.SERVER_ID)
    requested = ip_option(request, OptionCode.REQUESTED_IP)
    mac = request.mac
    if server_id is not None and server_id != ctx.server_ip:
        # RFC 2131 §3.1.4: the client chose another server's offer, so ours is free again.
        held = leases.get(mac, now)
        freed = []
        if held is not None and held.state is LeaseState.OFFERED:
            freed = leases.release(mac, held.ip, now)
        return NoReply(f"REQUEST for server {server_id}, not this one", tuple(freed))
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
        return nak(request, ctx, f"{ip} is not on network {ctx.network}")
    host = hosts.lookup(mac)
    reservation = _reservation(host, ctx)
    if server_id is None and reservation is None:
        # Not authoritative for clients we have no record of: another server may own them.
        held = leases.get(mac, now)
        other = leases.holder(ip, now)
        if held is None and other is not None:
            return nak(request, ctx, f"{ip} is held by another client")
        if held is None:
            return NoReply(f"{state} {mac} for {ip}: no record of this client")
        if held.ip != ip:
            return nak(request, ctx, f"{mac} holds {held.ip}, not {ip}")
    grant = leases.bind(
        mac, ip, now, ctx.lease_time, reserved=hosts.reserved(), reservation=reservation
    )
    if grant is None:
        if reservation is not None and ip != reservation:
            return nak(request, ctx, f"{mac} is reserved {reservation}, not {ip}")
        return nak(request, ctx, f"{ip} is not available to {mac}")
    return answer(request, ctx, host, MessageType.ACK, grant.lease.ip, grant.changes)


def _release(request: DhcpPacket, ctx: DhcpContext, leases: LeaseTable, now: float) -> NoReply:
    server_id = ip_option(request, OptionCode.SERVER_ID)
    if server_id is not None and server_id != ctx.server_ip:
        return NoReply(f"RELEASE for server {server_id}, not this one")
    freed = leases.release(request.mac, request.ciaddr, now)
    if not freed:
        return NoReply(f"RELEASE of {request.ciaddr}, which {request.mac} does not hold")
    return NoReply(f"released {request.ciaddr}", tuple(freed))


def _decline(request: DhcpPacket, ctx: DhcpContext, leases: LeaseTable, now: float) -> NoReply:
    server_id = ip_option(request, OptionCode.SERVER_ID)
    if server_id is not None and server_id != ctx.server_ip:
        return NoReply(f"DECLINE for server {server_id}, not this one")
    ip = ip_option(request, OptionCode.REQUESTED_IP)
    declined = leases.decline(request.mac, ip, now) if ip is not None else []
    if not declined:
        return NoReply(f"DECLINE of {ip}, which {request.mac} does not hold")
    return NoReply(
        f"{ip} declined (in use elsewhere), held back for {leases.decline_hold:g} s",
        tuple(declined),
    )


def _inform(request: DhcpPacket, ctx: DhcpContext, hosts: HostLookup) -> DhcpReply | NoReply:
    if request.ciaddr == ZERO_IP:
        return NoReply("INFORM without ciaddr")
    host = hosts.lookup(request.mac)
    return answer(request, ctx, host, MessageType.ACK, None)


def _reservation(host: HostInfo | None, ctx: DhcpContext) -> IPv4Address | None:
    """The host's reserved address, if it has one on the served network."""
    if host is None or host.ip is None or host.ip not in ctx.network:
        return None
    return host.ip

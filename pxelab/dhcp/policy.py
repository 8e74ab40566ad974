"""What the DHCP server answers: the dispatcher over full and proxy mode, and `DhcpCore`, the pure
core of one server (its subnets, the subnet for a request by giaddr, the expiry sweep).

`handle(request, sender, now)` returns a DhcpReply (packet, destination, lease changes) or a
NoReply (reason, lease changes); the adapter stores the changes, then sends. Nothing here reads a
clock, a socket or a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp.context import (
    PXE_PORT,
    SERVER_PORT,
    DhcpContext,
    DhcpMode,
    HostLookup,
    Sender,
    UnknownMacs,
)
from pxelab.dhcp.full import full_reply
from pxelab.dhcp.leases import Lease, LeaseTable
from pxelab.dhcp.options import message_type
from pxelab.dhcp.packet import ZERO_IP, DhcpPacket, Op
from pxelab.dhcp.proxy import proxy_reply
from pxelab.dhcp.reply import DhcpReply, NoReply
from pxelab.errors import MalformedPacket

EXPIRE_EVERY = 60.0
"""Seconds between sweeps that forget expired leases (expired ones are free even before)."""


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
    source: tuple[str, int] | None = None,
) -> DhcpReply | NoReply:
    """The answer to `request` in subnet `ctx`: a reply, or NoReply(reason); both carry the lease
    records changed. `port` is where it arrived (4011 is the proxyDHCP boot server port) and
    `source` the (address, port) it came from."""
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
            return proxy_reply(request, kind, ctx, hosts, port, source)
        if port == PXE_PORT:
            return NoReply("port 4011 is only served in proxy mode")
        return full_reply(request, kind, ctx, hosts, leases, now)
    except MalformedPacket as exc:
        return NoReply(f"malformed: {exc}")


@dataclass(frozen=True)
class Pool:
    """One served subnet: its context, its lease table, and the interface it is on."""

    ctx: DhcpContext
    """The subnet and what is handed out in it."""
    leases: LeaseTable
    """Its leases (the table is mutable; the pool record is not)."""
    interface: str | None = None
    """The interface whose direct (not relayed) requests it serves; None behind relays."""


class DhcpCore:
    """One DHCP server's decisions over all its subnets, driven by `now`; no I/O."""

    def __init__(
        self, pools: Sequence[Pool], hosts: HostLookup, *, expire_every: float = EXPIRE_EVERY
    ) -> None:
        self.pools = list(pools)
        self.hosts = hosts
        self.expire_every = expire_every
        self._next_sweep = float("-inf")

    def use_boot_files(self, boot_files: BootFiles) -> None:
        """Hand out these boot files in every subnet from now on (the leases stay)."""
        self.pools = [
            replace(pool, ctx=replace(pool.ctx, boot_files=boot_files)) for pool in self.pools
        ]

    def pool_for(self, request: DhcpPacket, interface: str) -> Pool | None:
        """The receiving interface's subnet for a direct request, else the subnet of giaddr."""
        if request.giaddr == ZERO_IP:
            return next((p for p in self.pools if p.interface == interface), None)
        return next((p for p in self.pools if request.giaddr in p.ctx.network), None)

    def handle(self, request: DhcpPacket, sender: Sender, now: float) -> DhcpReply | NoReply:
        """Decide on one request; the lease changes include those of a sweep that came due."""
        swept = self.sweep(now)
        outcome = self._decide(request, sender, now)
        if swept:
            outcome = replace(outcome, changes=(*swept, *outcome.changes))
        return outcome

    def _decide(self, request: DhcpPacket, sender: Sender, now: float) -> DhcpReply | NoReply:
        pool = self.pool_for(request, sender.interface)
        if pool is None:
            if request.giaddr == ZERO_IP:
                return NoReply(f"arrived on {sender.interface}, which serves no subnet")
            return NoReply(f"relayed by {request.giaddr}, which is in no configured subnet")
        return evaluate(
            request,
            pool.ctx,
            self.hosts,
            pool.leases,
            now,
            port=sender.server_port,
            source=(sender.address, sender.port),
        )

    def sweep(self, now: float) -> list[Lease]:
        """Forget expired leases in every subnet, at most every `expire_every` seconds; the FREE
        records it returns are for the store."""
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self.expire_every
        return [lease for pool in self.pools for lease in pool.leases.expire(now)]

    def learn(self, lease: Lease) -> list[Lease]:
        """Take in a lease the store holds (granted by another instance) into its subnet's table;
        returns the records it displaced."""
        for pool in self.pools:
            if lease.ip in pool.ctx.network:
                return pool.leases.learn(lease)
        return []

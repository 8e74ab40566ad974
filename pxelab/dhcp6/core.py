"""What the DHCPv6 server answers (RFC 8415 §18.3), pure: `decide(message, sender, ...)` gives a
Dhcp6Reply (message, destination, lease changes) or a NoReply6; `Dhcp6Core` holds the links.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv6Address

from pxelab.dhcp.arch import BootFiles, vendor_class_arch
from pxelab.dhcp.context import IPXE_SCRIPT, UnknownMacs
from pxelab.dhcp.reply import BootChoice, boot_for_arch
from pxelab.dhcp6.context import Dhcp6Context, Dhcp6Reply, Host6Info, Host6Lookup, NoReply6, Sender6
from pxelab.dhcp6.leases import Lease6, Lease6Table
from pxelab.dhcp6.options import (
    ENTERPRISE_PXE,
    IaAddress,
    IaNa,
    StatusCode,
    arch_codes,
    build_ia_na,
    build_iaaddr,
    duid_mac,
    encode_vendor_class,
    eui64_mac,
    linklayer_mac,
    parse_ia_na,
    status,
    user_classes,
    vendor_class,
)
from pxelab.dhcp6.packet import (
    CLIENT_PORT,
    HOP_COUNT_LIMIT,
    SERVER_PORT,
    Dhcp6Message,
    Message,
    MessageType,
    OptionCode,
    RelayMessage,
    build,
    parse,
)
from pxelab.errors import MalformedPacket

EXPIRE_EVERY = 60.0
"""Seconds between sweeps that forget expired leases."""

_CLIENT_TYPES = frozenset(
    {
        MessageType.SOLICIT,
        MessageType.REQUEST,
        MessageType.CONFIRM,
        MessageType.RENEW,
        MessageType.REBIND,
        MessageType.RELEASE,
        MessageType.DECLINE,
        MessageType.INFORMATION_REQUEST,
    }
)
_NEEDS_SERVER_ID = frozenset(
    {MessageType.REQUEST, MessageType.RENEW, MessageType.RELEASE, MessageType.DECLINE}
)


@dataclass(frozen=True)
class Request6:
    """A client message as the policy sees it: the message, its relays, who sent it."""

    message: Dhcp6Message
    """The client's message, unwrapped from its relays."""
    relays: tuple[RelayMessage, ...]
    """The RELAY-FORW envelopes, outermost (the one that reached us) first."""
    duid: bytes
    """The client's DUID (option 1); b"" for an INFORMATION-REQUEST without one."""
    mac: str | None
    """Its Ethernet address, from option 79, the DUID or its EUI-64 link-local address."""

    @property
    def client(self) -> str:
        """The lease key: the MAC when known, else "duid:<hex>"."""
        return self.mac if self.mac is not None else f"duid:{self.duid.hex()}"


def unwrap(message: Message, sender: Sender6) -> Request6 | str:
    """The client message inside any relays, or the reason it is not one to answer."""
    relays: list[RelayMessage] = []
    current: Message = message
    while isinstance(current, RelayMessage):
        if current.msg_type is not MessageType.RELAY_FORW:
            return "a RELAY-REPL, not a request"
        if len(relays) >= HOP_COUNT_LIMIT:
            return f"nested deeper than {HOP_COUNT_LIMIT} relays"
        inner = current.option(OptionCode.RELAY_MSG)
        if inner is None:
            raise MalformedPacket("RELAY-FORW without a relay message option (9)")
        relays.append(current)
        current = parse(inner)
    if current.msg_type not in _CLIENT_TYPES:
        return f"{current.msg_type.name} is a server message"
    duid = current.option(OptionCode.CLIENTID)
    if duid is None and current.msg_type is not MessageType.INFORMATION_REQUEST:
        return f"{current.msg_type.name} without a client identifier (option 1)"
    duid = duid or b""
    mac = None
    if relays:
        linklayer = relays[-1].option(OptionCode.CLIENT_LINKLAYER_ADDR)
        mac = linklayer_mac(linklayer) if linklayer is not None else None
    mac = mac or duid_mac(duid)
    if mac is None:
        peer = relays[-1].peer_address if relays else _address(sender.address)
        mac = eui64_mac(peer) if peer is not None and peer.is_link_local else None
    return Request6(current, tuple(relays), duid, mac)


def _address(text: str) -> IPv6Address | None:
    try:
        return IPv6Address(text.partition("%")[0])
    except ValueError:
        return None


def decide(
    message: Message,
    sender: Sender6,
    ctx: Dhcp6Context,
    hosts: Host6Lookup,
    leases: Lease6Table,
    now: float,
) -> Dhcp6Reply | NoReply6:
    """The answer to one message on link `ctx`; both outcomes carry the lease records changed."""
    try:
        request = unwrap(message, sender)
        if isinstance(request, str):
            return NoReply6(request)
        return _decide(request, sender, ctx, hosts, leases, now)
    except MalformedPacket as exc:
        return NoReply6(f"malformed: {exc}")


def _decide(
    request: Request6,
    sender: Sender6,
    ctx: Dhcp6Context,
    hosts: Host6Lookup,
    leases: Lease6Table,
    now: float,
) -> Dhcp6Reply | NoReply6:
    msg = request.message
    kind = msg.msg_type
    host = hosts.lookup(request.mac) if request.mac is not None else None
    if ctx.unknown_macs is UnknownMacs.IGNORE and host is None:
        return NoReply6(f"{request.client} is not in the inventory (unknown_macs = ignore)")
    server_id = msg.option(OptionCode.SERVERID)
    if kind in _NEEDS_SERVER_ID and server_id != ctx.server_duid:
        return NoReply6(f"{kind.name} for another server")
    if server_id is not None and server_id != ctx.server_duid:
        return NoReply6(f"{kind.name} for another server")
    if server_id is not None and kind in (
        MessageType.SOLICIT,
        MessageType.CONFIRM,
        MessageType.REBIND,
    ):
        return NoReply6(f"{kind.name} with a server identifier (RFC 8415 §16)")
    ias = [parse_ia_na(value) for code, value in msg.options if code == OptionCode.IA_NA]
    own = host.ip6 if host is not None else None
    reservation = own if own is not None and own in ctx.prefix else None
    if kind is MessageType.CONFIRM:
        addrs = [a.address for ia in ias for a in ia.addresses()]
        if not addrs:
            return NoReply6("CONFIRM with no addresses")
        on_link = all(a in ctx.prefix for a in addrs)
        code = StatusCode.SUCCESS if on_link else StatusCode.NOT_ON_LINK
        return _reply(request, sender, ctx, host, [status(code)], (), "")
    if kind in (MessageType.RELEASE, MessageType.DECLINE):
        changes: list[Lease6] = []
        for ia in ias:
            for addr in ia.addresses():
                if kind is MessageType.RELEASE:
                    changes += leases.release(request.client, ia.iaid, addr.address, now)
                else:
                    changes += leases.decline(request.client, ia.iaid, addr.address, now)
        done = "released" if kind is MessageType.RELEASE else "declined"
        note = f"{done} {len(changes)} address(es)"
        return _reply(request, sender, ctx, host, [status(StatusCode.SUCCESS)], changes, note)
    if kind is MessageType.INFORMATION_REQUEST:
        return _reply(request, sender, ctx, host, [], (), "", boot=True)
    rapid = kind is MessageType.SOLICIT and msg.option(OptionCode.RAPID_COMMIT) is not None
    bind = kind is not MessageType.SOLICIT or rapid
    out: list[tuple[int, bytes]] = []
    changes = []
    for ia in ias:
        hints = [a.address for a in ia.addresses()]
        ip = leases.choose(request.client, ia.iaid, now, hosts.reserved6(), reservation, hints)
        sub: list[tuple[int, bytes]] = []
        if ip is None:
            sub.append(status(StatusCode.NO_ADDRS_AVAIL, f"no free address in {ctx.prefix}"))
            out.append((OptionCode.IA_NA, build_ia_na(IaNa(ia.iaid, 0, 0, tuple(sub)))))
            continue
        hold = ctx.lease_time if bind else ctx.offer_hold
        changes += leases.hold(request.client, ia.iaid, ip, now, hold, bind)
        life = ctx.lease_time
        sub.append((OptionCode.IAADDR, build_iaaddr(IaAddress(ip, life, life))))
        for old in hints:
            if old != ip and kind in (MessageType.RENEW, MessageType.REBIND):
                sub.append((OptionCode.IAADDR, build_iaaddr(IaAddress(old, 0, 0))))
        t1, t2 = life // 2, life * 4 // 5
        out.append((OptionCode.IA_NA, build_ia_na(IaNa(ia.iaid, t1, t2, tuple(sub)))))
    if kind is MessageType.SOLICIT and not rapid:
        out.append((OptionCode.PREFERENCE, bytes((ctx.preference,))))
    if rapid:
        out.append((OptionCode.RAPID_COMMIT, b""))
    reply_kind = MessageType.ADVERTISE if kind is MessageType.SOLICIT and not rapid else None
    return _reply(request, sender, ctx, host, out, changes, "", boot=True, kind=reply_kind)


def _reply(
    request: Request6,
    sender: Sender6,
    ctx: Dhcp6Context,
    host: Host6Info | None,
    options: list[tuple[int, bytes]],
    changes: Sequence[Lease6],
    note: str,
    *,
    boot: bool = False,
    kind: MessageType | None = None,
) -> Dhcp6Reply:
    """The ADVERTISE or REPLY with the ids, `options`, DNS and boot URL, wrapped for relays."""
    msg = request.message
    head: list[tuple[int, bytes]] = []
    if request.duid:
        head.append((OptionCode.CLIENTID, request.duid))
    head.append((OptionCode.SERVERID, ctx.server_duid))
    tail: list[tuple[int, bytes]] = []
    if ctx.dns:
        tail.append((OptionCode.DNS_SERVERS, b"".join(a.packed for a in ctx.dns)))
    if boot:
        choice = choose_boot(msg, ctx, host)
        note = note or choice.note
        if choice.file is not None:
            if choice.http_client:
                tail.append(
                    (OptionCode.VENDOR_CLASS, encode_vendor_class(ENTERPRISE_PXE, [b"HTTPClient"]))
                )
            tail.append((OptionCode.BOOTFILE_URL, choice.file.encode()))
    reply: Message = Dhcp6Message(
        kind or MessageType.REPLY, msg.transaction_id, (*head, *options, *tail)
    )
    for relay in reversed(request.relays):
        wrap: list[tuple[int, bytes]] = []
        interface_id = relay.option(OptionCode.INTERFACE_ID)
        if interface_id is not None:
            wrap.append((OptionCode.INTERFACE_ID, interface_id))
        wrap.append((OptionCode.RELAY_MSG, build(reply)))
        reply = RelayMessage(
            MessageType.RELAY_REPL,
            relay.hop_count,
            relay.link_address,
            relay.peer_address,
            tuple(wrap),
        )
    port = SERVER_PORT if request.relays else CLIENT_PORT
    return Dhcp6Reply(reply, (sender.address, port), request.client, note, tuple(changes))


def choose_boot(msg: Dhcp6Message, ctx: Dhcp6Context, host: Host6Info | None) -> BootChoice:
    """The boot file URL (option 59): none, iPXE's script, tftp:// or http:// for the firmware."""
    if host is not None and not host.pxeboot:
        return BootChoice(None, False, f"pxeboot is off for host {host.name}")
    user = msg.option(OptionCode.USER_CLASS)
    if user is not None and any(b"iPXE" in item for item in user_classes(user)):
        return BootChoice(ctx.url(IPXE_SCRIPT), False, "iPXE client")
    raw_arch = msg.option(OptionCode.CLIENT_ARCH_TYPE)
    codes = arch_codes(raw_arch) if raw_arch is not None else None
    vendor = msg.option(OptionCode.VENDOR_CLASS)
    items = vendor_class(vendor)[1] if vendor is not None else ()
    from_vendor = next((code for code in map(vendor_class_arch, items) if code is not None), None)
    note = ""
    if codes is None:
        if from_vendor is None:
            return BootChoice(None, False, "not a netboot client (no option 61)")
        codes, note = (from_vendor,), f"arch {from_vendor} from option 16"
    return boot_for_arch(codes, host, ctx.boot_files, ctx.url, note, ctx.tftp_url)


@dataclass(frozen=True)
class Pool6:
    """One served link: its context, its lease table, and the interface it is on."""

    ctx: Dhcp6Context
    """The prefix and what is handed out on it."""
    leases: Lease6Table
    """Its leases (the table is mutable; the pool record is not)."""
    interface: str | None = None
    """The interface whose direct (not relayed) messages it serves; None behind relays."""


class Dhcp6Core:
    """One DHCPv6 server's decisions over all its links, driven by `now`; no I/O."""

    def __init__(self, pools: Sequence[Pool6], hosts: Host6Lookup) -> None:
        self.pools = list(pools)
        self.hosts = hosts
        self._next_sweep = float("-inf")

    def learn(self, lease: Lease6) -> None:
        """Take in a lease the store holds (granted by another instance) into its link's table."""
        for pool in self.pools:
            if lease.ip in pool.ctx.prefix:
                pool.leases.learn(lease)
                return

    def use_boot_files(self, boot_files: BootFiles) -> None:
        """Hand out these boot files on every link from now on (the leases stay)."""
        self.pools = [
            replace(pool, ctx=replace(pool.ctx, boot_files=boot_files)) for pool in self.pools
        ]

    def pool_for(self, message: Message, interface: str) -> Pool6 | None:
        """The pool of the innermost relay's link address, else of the receiving interface."""
        link = None
        current: Message = message
        while isinstance(current, RelayMessage):
            if not current.link_address.is_unspecified:
                link = current.link_address
            inner = current.option(OptionCode.RELAY_MSG)
            if inner is None:
                break
            current = parse(inner)
        if link is not None:
            return next((p for p in self.pools if link in p.ctx.prefix), None)
        return next((p for p in self.pools if p.interface == interface), None)

    def handle(self, message: Message, sender: Sender6, now: float) -> Dhcp6Reply | NoReply6:
        """Decide on one message; the changes include those of a sweep that came due."""
        swept: list[Lease6] = []
        if now >= self._next_sweep:
            self._next_sweep = now + EXPIRE_EVERY
            swept = [lease for pool in self.pools for lease in pool.leases.expire(now)]
        try:
            pool = self.pool_for(message, sender.interface)
        except MalformedPacket as exc:
            return NoReply6(f"malformed: {exc}", tuple(swept))
        if pool is None:
            outcome: Dhcp6Reply | NoReply6 = NoReply6(f"{sender.interface}: no IPv6 prefix served")
        else:
            outcome = decide(message, sender, pool.ctx, self.hosts, pool.leases, now)
        return replace(outcome, changes=(*swept, *outcome.changes)) if swept else outcome

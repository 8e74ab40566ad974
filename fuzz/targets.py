"""Fuzz targets for pxelab's pure cores: bytes in, no exception but the codec's own out.

Each target takes one input and checks invariants with `assert`; an AssertionError or any
other exception is a finding. Used by `make fuzz` (atheris, coverage-guided) and by the tests.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import ClassVar

from fuzz.dhcp6_target import dhcp6_one, dhcp6_seed
from pxelab.dhcp import packet as dhcp
from pxelab.dhcp.context import DhcpContext, DhcpMode, Sender
from pxelab.dhcp.leases import LeaseState, LeaseTable
from pxelab.dhcp.policy import DhcpCore, Pool, evaluate
from pxelab.dhcp.reply import DhcpReply
from pxelab.errors import MalformedPacket
from pxelab.tftp import packet as tftp
from pxelab.tftp.session import MemorySource, ReadSession, SessionConfig, check_request


@dataclass(frozen=True)
class _Host:
    name: str
    ip: IPv4Address | None
    pxeboot: bool = True
    loader: str | None = None
    secure_boot: bool = False


class _Hosts:
    """Two reserved hosts, one GRUB/Secure Boot, one that does not netboot."""

    table: ClassVar[dict[str, _Host]] = {
        "52:54:00:00:00:01": _Host("known", IPv4Address("10.0.0.50")),
        "52:54:00:00:00:02": _Host("disk", IPv4Address("10.0.0.51"), pxeboot=False),
        "52:54:00:00:00:03": _Host("sb", None, secure_boot=True),
    }

    def lookup(self, mac: str) -> _Host | None:
        return self.table.get(mac)

    def reserved(self) -> dict[IPv4Address, str]:
        return {h.ip: mac for mac, h in self.table.items() if h.ip is not None}


_FULL = DhcpContext(
    server_ip=IPv4Address("10.0.0.1"),
    network=IPv4Network("10.0.0.0/24"),
    pool_start=IPv4Address("10.0.0.100"),
    pool_end=IPv4Address("10.0.0.103"),  # small: exhaustion is reached
    router=IPv4Address("10.0.0.254"),
    lease_time=600,
    http_port=8080,
)
_PROXY = DhcpContext(
    server_ip=IPv4Address("10.0.0.1"),
    network=IPv4Network("10.0.0.0/24"),
    pool_start=IPv4Address("10.0.0.100"),
    pool_end=IPv4Address("10.0.0.103"),
    http_port=8080,
    mode=DhcpMode.PROXY,
)
_FAR = DhcpContext(
    server_ip=IPv4Address("10.0.0.1"),
    network=IPv4Network("10.9.0.0/24"),
    pool_start=IPv4Address("10.9.0.10"),
    pool_end=IPv4Address("10.9.0.11"),
    relayed=True,
)
_HOSTS = _Hosts()


class _DhcpState:
    """Leases and a clock that live across inputs, so sequences of messages are explored."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.now = 1_000_000.0
        self.leases = LeaseTable(_FULL.pool_start, _FULL.pool_end, server_ip=_FULL.server_ip)
        far = LeaseTable(_FAR.pool_start, _FAR.pool_end, server_ip=_FAR.server_ip)
        self.core = DhcpCore([Pool(_FULL, self.leases, "eth0"), Pool(_FAR, far)], _HOSTS)
        self.count = 0


_STATE = _DhcpState()


def dhcp_one(data: bytes) -> None:
    """Parse one datagram; if it parses, decide on it (full and proxy mode, ports 67 and 4011)."""
    try:
        request = dhcp.parse(data)
    except MalformedPacket:
        return
    with contextlib.suppress(ValueError):  # a parsed packet may hold values our builder refuses
        dhcp.build(request)
    _STATE.count += 1
    if _STATE.count % 10_000 == 0:
        _STATE.reset()  # keep the lease table small and the run fast
    _STATE.now += (data[0] if data else 1) * 7.0
    for ctx, port in ((_PROXY, 67), (_PROXY, 4011)):
        outcome = evaluate(request, ctx, _HOSTS, _STATE.leases, _STATE.now, port=port)
        assert outcome.changes == (), "proxyDHCP changed a lease"
        if isinstance(outcome, DhcpReply):
            _check_reply(request, outcome.packet)
            assert outcome.packet.yiaddr == IPv4Address(0), "proxyDHCP handed out an address"
    sender = Sender("0.0.0.0", 68, "eth0" if data[-1:] != b"\x01" else "eth1")
    full = _STATE.core.handle(request, sender, _STATE.now)
    networks = (_FULL.network, _FAR.network)
    assert all(any(c.ip in n for n in networks) for c in full.changes), "a change off the subnets"
    if isinstance(full, DhcpReply):
        reply = full.packet
        _check_reply(request, reply)
        if reply.yiaddr != IPv4Address(0):
            assert any(reply.yiaddr in n for n in networks), "an address off the subnets"
            held = next(p for p in _STATE.core.pools if reply.yiaddr in p.ctx.network)
            lease = held.leases.holder(reply.yiaddr, _STATE.now)
            assert lease is not None and lease.mac == request.mac, "offered but not held"
            assert lease.state in (LeaseState.OFFERED, LeaseState.BOUND)


def _check_reply(request: dhcp.DhcpPacket, reply: dhcp.DhcpPacket) -> None:
    assert dhcp.parse(dhcp.build(reply)) == reply, "a reply does not survive our codec"
    assert reply.op == dhcp.Op.BOOTREPLY and reply.xid == request.xid


_KINDS = 4


def tftp_one(data: bytes) -> None:
    """A read request, then a script of client events (ACKs, ERRORs, timer, raw datagrams).

    Layout: [n][n bytes: the request datagram][3 bytes: file size][5-byte events...].
    """
    if len(data) < 4:
        return
    n = data[0]
    try:
        request = tftp.parse(data[1 : 1 + n])
    except MalformedPacket:
        return
    if not isinstance(request, tftp.ReadRequest) or check_request(request) is not None:
        return
    rest = data[1 + n :]
    size = int.from_bytes(rest[:3].ljust(3, b"\0"), "big") % 300_000
    config = SessionConfig(timeout=1.0, retries=3)
    session = ReadSession(MemorySource(bytes(size)), request.options, config)
    blksize = session.negotiated.blksize
    now = 0.0
    steps = [session.start(now)]
    for i in range(3, len(rest) - 4, 5):
        kind, b1, b2, dt, x = rest[i : i + 5]
        now += dt / 16
        match kind % _KINDS:
            case 0:
                steps.append(session.receive(tftp.Ack((b1 << 8) | b2), now))
            case 1:
                steps.append(session.receive(tftp.ErrorPacket(tftp.ErrorCode(x % 9), "fuzz"), now))
            case 2:
                steps.append(session.expire(now))
            case _:
                try:
                    packet = tftp.parse(bytes([b1, b2, dt, x]))
                except MalformedPacket:
                    continue
                steps.append(session.receive(packet, now))
    ended = [step for step in steps if step.outcome is not None]
    assert len(ended) <= 1, "a session ended twice"
    for step in steps:
        for datagram in step.send:
            sent = tftp.parse(datagram)
            if isinstance(sent, tftp.Data):
                assert len(sent.data) <= blksize, "a DATA block is larger than blksize"
            else:
                assert isinstance(sent, tftp.OptionAck | tftp.ErrorPacket), type(sent)
    if ended:
        assert session.receive(tftp.Ack(1), now + 1).send == (), "a session talked after its end"


TARGETS = {"dhcp": dhcp_one, "dhcp6": dhcp6_one, "tftp": tftp_one}


def seed_inputs() -> dict[str, list[bytes]]:
    """A few valid inputs per target, so mutation starts from real protocol messages."""
    pxe = dhcp.DhcpPacket(
        op=dhcp.Op.BOOTREQUEST,
        xid=7,
        chaddr=bytes.fromhex("525400000001"),
        options=(
            (dhcp.OptionCode.MESSAGE_TYPE, bytes((dhcp.MessageType.DISCOVER,))),
            (93, struct.pack("!H", 7)),
            (60, b"PXEClient:Arch:00007:UNDI:003016"),
        ),
    )
    rrq = tftp.build(
        tftp.ReadRequest("ipxe.efi", "octet", {"blksize": "1468", "tsize": "0", "windowsize": "4"})
    )
    script = (
        bytes([len(rrq)])
        + rrq
        + b"\x01\x00\x00"
        + b"\x00\x00\x00\x10\x00"
        + b"\x00\x00\x01\x10\x00" * 4
    )
    return {"dhcp": [dhcp.build(pxe)], "dhcp6": [dhcp6_seed()], "tftp": [script]}

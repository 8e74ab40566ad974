"""Hypothesis: mutated real requests never raise anything but MalformedPacket, in the codec or in
the decisions (full and proxy mode), and whatever is decided can be built."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from pxelab.dhcp.context import DhcpContext, DhcpMode
from pxelab.dhcp.leases import LeaseTable
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, build, parse
from pxelab.dhcp.policy import evaluate
from pxelab.dhcp.reply import DhcpReply, NoReply
from pxelab.errors import MalformedPacket
from tests.unit.test_dhcp_policy import CTX, HOSTS, KNOWN

PROXY = DhcpContext(**{**CTX.__dict__, "mode": DhcpMode.PROXY})


def seed(kind: MessageType) -> bytes:
    return build(
        DhcpPacket(
            op=Op.BOOTREQUEST,
            xid=7,
            chaddr=bytes.fromhex(KNOWN.replace(":", "")),
            options=(
                (53, bytes((kind,))),
                (50, IPv4Address("10.0.0.50").packed),
                (54, IPv4Address("10.0.0.1").packed),
                (93, b"\x00\x07"),
                (60, b"PXEClient:Arch:00007:UNDI:003016"),
                (97, bytes(17)),
                (77, b"iPXE"),
            ),
        )
    )


SEEDS = [seed(kind) for kind in MessageType]


@settings(max_examples=400, deadline=None)
@given(
    which=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=12),
    cut=st.integers(200, 400),
    port=st.sampled_from([67, 4011]),
)
def test_mutated_requests_never_crash(
    which: bytes, edits: list[tuple[int, int]], cut: int, port: int
) -> None:
    data = bytearray(which[:cut])
    for offset, value in edits:
        if offset < len(data):
            data[offset] = value
    try:
        request = parse(bytes(data))
    except MalformedPacket:
        return
    for ctx in (CTX, PROXY):
        leases = LeaseTable(CTX.pool_start, CTX.pool_end, server_ip=CTX.server_ip)
        outcome = evaluate(request, ctx, HOSTS, leases, 0.0, port=port)
        assert isinstance(outcome, DhcpReply | NoReply)
        if isinstance(outcome, DhcpReply):
            assert parse(build(outcome.packet)) == outcome.packet

"""The DHCPv6 fuzz target: one datagram through the codec and a server core kept across inputs."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from pxelab.dhcp6 import packet as dhcp6
from pxelab.dhcp6.context import Dhcp6Context, Dhcp6Reply, Sender6
from pxelab.dhcp6.core import Dhcp6Core, Pool6
from pxelab.dhcp6.leases import Lease6Table
from pxelab.dhcp6.options import duid_ll
from pxelab.errors import MalformedPacket

_PREFIX = IPv6Network("2001:db8:77::/64")
_CTX = Dhcp6Context(
    server_duid=duid_ll(bytes.fromhex("020000000001")),
    server_ip=IPv6Address("2001:db8:77::1"),
    prefix=_PREFIX,
    pool_start=IPv6Address("2001:db8:77::1000"),
    pool_end=IPv6Address("2001:db8:77::1003"),  # small: exhaustion is reached
    http_port=8080,
)
_SENDER = Sender6("fe80::5054:ff:fe00:1", 546, "veth0")


@dataclass(frozen=True)
class _Host:
    name: str
    ip6: IPv6Address | None
    pxeboot: bool = True
    loader: str | None = None
    secure_boot: bool = False


class _Hosts:
    def lookup(self, mac: str) -> _Host | None:
        return _Host("known", IPv6Address("2001:db8:77::50")) if mac.endswith(":01") else None

    def reserved6(self) -> dict[IPv6Address, str]:
        return {IPv6Address("2001:db8:77::50"): "52:54:00:00:00:01"}


class _State:
    """A core and a clock that live across inputs, so sequences of messages are explored."""

    def __init__(self) -> None:
        self.now = 0.0
        self.core = Dhcp6Core(
            [Pool6(_CTX, Lease6Table(_CTX.pool_start, _CTX.pool_end), "veth0")], _Hosts()
        )


_STATE = _State()


def dhcp6_one(data: bytes) -> None:
    """Parse, rebuild, decide: only MalformedPacket may come out of parse, nothing of decide."""
    try:
        message = dhcp6.parse(data)
    except MalformedPacket:
        return
    assert dhcp6.build(message) == bytes(data), "parse/build is not the identity"
    _STATE.now += 1.0
    outcome = _STATE.core.handle(message, _SENDER, _STATE.now)
    if isinstance(outcome, Dhcp6Reply):
        reply = dhcp6.parse(dhcp6.build(outcome.message))
        assert reply.option(dhcp6.OptionCode.SERVERID) in (None, _CTX.server_duid)
        assert outcome.destination[1] in (dhcp6.CLIENT_PORT, dhcp6.SERVER_PORT)
        for lease in outcome.changes:
            assert lease.ip in _PREFIX, lease
            assert lease.client.startswith("duid:") or len(lease.client) == 17, lease


def dhcp6_seed() -> bytes:
    """A UEFI PXE SOLICIT with a DUID-LLT, one IA_NA, option 61 and rapid commit."""
    duid = bytes.fromhex("0001000100000001525400000001")
    ia_na = bytes(12)
    return dhcp6.build(
        dhcp6.Dhcp6Message(
            dhcp6.MessageType.SOLICIT,
            7,
            (
                (dhcp6.OptionCode.CLIENTID, duid),
                (dhcp6.OptionCode.IA_NA, ia_na),
                (dhcp6.OptionCode.CLIENT_ARCH_TYPE, b"\x00\x07"),
                (dhcp6.OptionCode.RAPID_COMMIT, b""),
            ),
        )
    )

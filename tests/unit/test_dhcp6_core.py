"""The DHCPv6 server core: every message type, boot URLs, relays, reservations, rapid commit."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp6 import (
    DUID_LL,
    DUID_LLT,
    DUID_UUID,
    USER_CLASS_DATA,
    VENDOR_CLASS_DATA,
    DHCP6_Advertise,
    DHCP6_Confirm,
    DHCP6_Decline,
    DHCP6_InfoRequest,
    DHCP6_Rebind,
    DHCP6_RelayForward,
    DHCP6_RelayReply,
    DHCP6_Release,
    DHCP6_Renew,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    DHCP6OptBootFileUrl,
    DHCP6OptClientArchType,
    DHCP6OptClientId,
    DHCP6OptClientLinkLayerAddr,
    DHCP6OptDNSServers,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
    DHCP6OptIfaceId,
    DHCP6OptPref,
    DHCP6OptRapidCommit,
    DHCP6OptRelayMsg,
    DHCP6OptServerId,
    DHCP6OptStatusCode,
    DHCP6OptUserClass,
    DHCP6OptVendorClass,
)
from scapy.packet import Packet

from pxelab.dhcp.leases import LeaseState
from pxelab.dhcp6.context import Dhcp6Context, Dhcp6Reply, NoReply6, Sender6, default_pool
from pxelab.dhcp6.core import Dhcp6Core, Pool6, decide
from pxelab.dhcp6.leases import Lease6Table
from pxelab.dhcp6.options import duid_ll
from pxelab.dhcp6.packet import build, parse
from pxelab.errors import MalformedPacket

MAC = "52:54:00:12:34:56"
KNOWN = "52:54:00:00:00:01"
DISK = "52:54:00:00:00:02"
PREFIX = IPv6Network("2001:db8:77::/64")
SERVER_DUID = duid_ll(bytes.fromhex("020000000001"))
START, END = default_pool(PREFIX)
CTX = Dhcp6Context(
    server_duid=SERVER_DUID,
    server_ip=IPv6Address("2001:db8:77::1"),
    prefix=PREFIX,
    pool_start=START,
    pool_end=END,
    dns=(IPv6Address("2001:db8:77::53"),),
    lease_time=3600,
    http_port=8080,
)
CLIENT = Sender6("fe80::5054:ff:fe12:3456", 546, "veth0")


@dataclass(frozen=True)
class _Host:
    name: str
    ip6: IPv6Address | None
    pxeboot: bool = True
    loader: str | None = None
    secure_boot: bool = False


class _Hosts:
    table: ClassVar[dict[str, _Host]] = {
        KNOWN: _Host("known", IPv6Address("2001:db8:77::50")),
        DISK: _Host("disk", None, pxeboot=False),
    }

    def lookup(self, mac: str) -> _Host | None:
        return self.table.get(mac)

    def reserved6(self) -> dict[IPv6Address, str]:
        return {h.ip6: mac for mac, h in self.table.items() if h.ip6 is not None}


def run(
    packet: Packet, leases: Lease6Table, now: float = 0.0, sender: Sender6 = CLIENT
) -> Dhcp6Reply | NoReply6:
    return decide(parse(bytes(packet)), sender, CTX, _Hosts(), leases, now)


def table() -> Lease6Table:
    return Lease6Table(START, END)


def reply_of(outcome: Dhcp6Reply | NoReply6, layer: type[Packet]) -> Packet:
    assert isinstance(outcome, Dhcp6Reply), outcome
    return layer(build(outcome.message))


def solicit(mac: str = MAC, *extra: Packet, arch: int | None = 7) -> Packet:
    pkt = DHCP6_Solicit(trid=0x1234) / DHCP6OptClientId(duid=DUID_LLT(lladdr=mac, timeval=1))
    pkt /= DHCP6OptIA_NA(iaid=1)
    if arch is not None:
        pkt /= DHCP6OptClientArchType(archtypes=[arch])
    for layer in extra:
        pkt /= layer
    return pkt


def test_pxe_solicit_gets_advertise_with_tftp_url() -> None:
    leases = table()
    outcome = run(solicit(), leases)
    adv = reply_of(outcome, DHCP6_Advertise)
    assert adv.trid == 0x1234
    assert adv[DHCP6OptServerId].duid.lladdr == "02:00:00:00:00:01"
    assert adv[DHCP6OptClientId].duid.lladdr == MAC
    assert adv[DHCP6OptIAAddress].addr == str(START)
    assert adv[DHCP6OptBootFileUrl].optdata == b"tftp://[2001:db8:77::1]/ipxe.efi"
    assert adv[DHCP6OptDNSServers].dnsservers == ["2001:db8:77::53"]
    assert adv[DHCP6OptPref].prefval == 255
    assert isinstance(outcome, Dhcp6Reply) and outcome.destination == (CLIENT.address, 546)
    assert [c.state for c in outcome.changes] == [LeaseState.OFFERED]
    assert outcome.client == MAC


def test_http_client_gets_http_url_and_vendor_class() -> None:
    vendor = DHCP6OptVendorClass(
        enterprisenum=343, vcdata=[VENDOR_CLASS_DATA(data=b"HTTPClient:Arch:00016:UNDI:003001")]
    )
    adv = reply_of(run(solicit(MAC, vendor, arch=16), table()), DHCP6_Advertise)
    assert adv[DHCP6OptBootFileUrl].optdata == b"http://[2001:db8:77::1]:8080/tftp/ipxe.efi"
    assert adv[DHCP6OptVendorClass].enterprisenum == 343
    assert adv[DHCP6OptVendorClass].vcdata[0].data == b"HTTPClient"


def test_arch_from_vendor_class_when_no_option_61() -> None:
    vendor = DHCP6OptVendorClass(
        enterprisenum=343, vcdata=[VENDOR_CLASS_DATA(data=b"PXEClient:Arch:00011:UNDI:003016")]
    )
    adv = reply_of(run(solicit(MAC, vendor, arch=None), table()), DHCP6_Advertise)
    assert adv[DHCP6OptBootFileUrl].optdata == b"tftp://[2001:db8:77::1]/ipxe-arm64.efi"


def test_ipxe_gets_script_url() -> None:
    user = DHCP6OptUserClass(userclassdata=[USER_CLASS_DATA(data=b"iPXE")])
    adv = reply_of(run(solicit(MAC, user), table()), DHCP6_Advertise)
    assert adv[DHCP6OptBootFileUrl].optdata == b"http://[2001:db8:77::1]:8080/boot.ipxe"


def test_plain_client_gets_no_boot_url_and_pxeboot_off_none() -> None:
    adv = reply_of(run(solicit(MAC, arch=None), table()), DHCP6_Advertise)
    assert DHCP6OptBootFileUrl not in adv and DHCP6OptIAAddress in adv
    adv = reply_of(run(solicit(DISK), table()), DHCP6_Advertise)
    assert DHCP6OptBootFileUrl not in adv


def test_unknown_arch_is_logged_not_served() -> None:
    outcome = run(solicit(MAC, arch=42), table())
    assert isinstance(outcome, Dhcp6Reply) and "unknown client architecture 42" in outcome.note
    assert DHCP6OptBootFileUrl not in DHCP6_Advertise(build(outcome.message))


def test_rapid_commit_binds_at_once() -> None:
    leases = table()
    outcome = run(solicit(MAC, DHCP6OptRapidCommit()), leases)
    reply = reply_of(outcome, DHCP6_Reply)
    assert DHCP6OptRapidCommit in reply
    assert isinstance(outcome, Dhcp6Reply)
    assert [c.state for c in outcome.changes] == [LeaseState.BOUND]


def test_reservation_from_ip6() -> None:
    adv = reply_of(run(solicit(KNOWN), table()), DHCP6_Advertise)
    assert adv[DHCP6OptIAAddress].addr == "2001:db8:77::50"


def request(kind: type[Packet], addr: str, server: bool = True, mac: str = MAC) -> Packet:
    pkt = kind(trid=7) / DHCP6OptClientId(duid=DUID_LLT(lladdr=mac, timeval=1))
    if server:
        pkt /= DHCP6OptServerId(duid=DUID_LL(lladdr="02:00:00:00:00:01"))
    return pkt / DHCP6OptIA_NA(iaid=1, ianaopts=[DHCP6OptIAAddress(addr=addr)])


def test_request_renew_rebind_release() -> None:
    leases = table()
    run(solicit(), leases)
    outcome = run(request(DHCP6_Request, str(START)), leases, 1.0)
    reply = reply_of(outcome, DHCP6_Reply)
    assert reply[DHCP6OptIAAddress].addr == str(START)
    assert reply[DHCP6OptIA_NA].T1 == 1800 and reply[DHCP6OptIA_NA].T2 == 2880
    assert leases.get(MAC, 1, 1.0) is not None
    assert leases.get(MAC, 1, 1.0).state is LeaseState.BOUND  # type: ignore[union-attr]
    reply = reply_of(run(request(DHCP6_Renew, str(START)), leases, 100.0), DHCP6_Reply)
    assert reply[DHCP6OptIAAddress].validlft == 3600
    reply = reply_of(
        run(request(DHCP6_Rebind, str(START), server=False), leases, 200.0), DHCP6_Reply
    )
    assert reply[DHCP6OptIAAddress].addr == str(START)
    outcome = run(request(DHCP6_Release, str(START)), leases, 300.0)
    reply = reply_of(outcome, DHCP6_Reply)
    assert reply[DHCP6OptStatusCode].statuscode == 0
    assert leases.get(MAC, 1, 300.0) is None


def test_renew_of_foreign_address_gets_new_one_and_zero_lifetimes_for_old() -> None:
    leases = table()
    reply = reply_of(run(request(DHCP6_Renew, "2001:db8:99::5"), leases), DHCP6_Reply)
    addrs = reply[DHCP6OptIA_NA].ianaopts
    assert [(a.addr, a.validlft) for a in addrs] == [(str(START), 3600), ("2001:db8:99::5", 0)]


def test_request_for_another_server_is_ignored() -> None:
    pkt = request(DHCP6_Request, str(START), server=False) / DHCP6OptServerId(
        duid=DUID_LL(lladdr="02:00:00:00:00:99")
    )
    outcome = run(pkt, table())
    assert isinstance(outcome, NoReply6) and "another server" in outcome.reason


def test_decline_holds_address_back() -> None:
    leases = table()
    run(request(DHCP6_Request, str(START)), leases)
    outcome = run(request(DHCP6_Decline, str(START)), leases, 1.0)
    assert isinstance(outcome, Dhcp6Reply)
    assert [c.state for c in outcome.changes] == [LeaseState.DECLINED]
    adv = reply_of(run(solicit("52:54:00:99:99:99"), leases, 2.0), DHCP6_Advertise)
    assert adv[DHCP6OptIAAddress].addr != str(START)


@pytest.mark.parametrize(("addr", "code"), [("2001:db8:77::1234", 0), ("2001:db8:1::1", 4)])
def test_confirm(addr: str, code: int) -> None:
    reply = reply_of(run(request(DHCP6_Confirm, addr, server=False), table()), DHCP6_Reply)
    assert reply[DHCP6OptStatusCode].statuscode == code


def test_information_request() -> None:
    pkt = DHCP6_InfoRequest(trid=3) / DHCP6OptClientArchType(archtypes=[7])
    reply = reply_of(run(pkt, table()), DHCP6_Reply)
    assert DHCP6OptIA_NA not in reply and DHCP6OptClientId not in reply
    assert reply[DHCP6OptBootFileUrl].optdata == b"tftp://[2001:db8:77::1]/ipxe.efi"


def test_uuid_duid_maps_through_eui64_link_local() -> None:
    pkt = DHCP6_Solicit(trid=1) / DHCP6OptClientId(duid=DUID_UUID()) / DHCP6OptIA_NA(iaid=1)
    sender = Sender6("fe80::5054:ff:fe00:1", 546, "veth0")
    outcome = run(pkt, table(), sender=sender)
    assert isinstance(outcome, Dhcp6Reply) and outcome.client == KNOWN
    assert DHCP6_Advertise(build(outcome.message))[DHCP6OptIAAddress].addr == "2001:db8:77::50"


def test_relay_forward_uses_option_79_and_echoes_interface_id() -> None:
    inner = (
        DHCP6_Solicit(trid=5)
        / DHCP6OptClientId(duid=DUID_UUID())
        / DHCP6OptIA_NA(iaid=1)
        / DHCP6OptClientArchType(archtypes=[7])
    )
    relay = (
        DHCP6_RelayForward(hopcount=0, linkaddr="2001:db8:77::ff", peeraddr="fe80::abcd")
        / DHCP6OptIfaceId(ifaceid=b"port7")
        / DHCP6OptClientLinkLayerAddr(clladdr=KNOWN)
        / DHCP6OptRelayMsg(message=inner)
    )
    sender = Sender6("2001:db8:5::1", 547, "veth0")
    core = Dhcp6Core([Pool6(CTX, table(), None)], _Hosts())
    outcome = core.handle(parse(bytes(relay)), sender, 0.0)
    assert isinstance(outcome, Dhcp6Reply)
    assert outcome.destination == ("2001:db8:5::1", 547)
    repl = DHCP6_RelayReply(build(outcome.message))
    assert repl.peeraddr == "fe80::abcd" and repl[DHCP6OptIfaceId].ifaceid == b"port7"
    adv = repl[DHCP6OptRelayMsg].message
    assert isinstance(adv, DHCP6_Advertise)
    assert adv[DHCP6OptIAAddress].addr == "2001:db8:77::50"


def test_core_picks_pool_by_interface_and_sweeps() -> None:
    leases = table()
    core = Dhcp6Core([Pool6(CTX, leases, "veth0")], _Hosts())
    outcome = core.handle(parse(bytes(solicit())), Sender6(CLIENT.address, 546, "eth9"), 0.0)
    assert isinstance(outcome, NoReply6) and "eth9" in outcome.reason
    core.handle(parse(bytes(solicit())), CLIENT, 1.0)
    outcome = core.handle(parse(bytes(solicit("52:54:00:99:00:01"))), CLIENT, 1000.0)
    assert isinstance(outcome, Dhcp6Reply)
    assert outcome.changes[0].state is LeaseState.FREE  # the first offer, swept


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_random_messages_never_crash_the_core(data: bytes) -> None:
    core = Dhcp6Core([Pool6(CTX, table(), "veth0")], _Hosts())
    try:
        message = parse(data)
    except MalformedPacket:
        return
    outcome = core.handle(message, CLIENT, 0.0)
    assert isinstance(outcome, (Dhcp6Reply, NoReply6))


@settings(max_examples=200)
@given(st.sampled_from([1, 3, 4, 5, 6, 8, 9, 11]), st.binary(max_size=60))
def test_typed_messages_with_random_options_never_crash(kind: int, body: bytes) -> None:
    data = bytes((kind, 0, 0, 1)) + bytes(DHCP6OptClientId(duid=DUID_LL(lladdr=MAC))) + body
    try:
        message = parse(data)
    except MalformedPacket:
        return
    assert isinstance(decide(message, CLIENT, CTX, _Hosts(), table(), 0.0), (Dhcp6Reply, NoReply6))

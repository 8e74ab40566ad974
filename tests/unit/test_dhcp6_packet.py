"""The DHCPv6 codec: round trips, malformed input, option readers, and agreement with scapy."""

from __future__ import annotations

import contextlib
from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp6 import (
    DUID_LL,
    DUID_LLT,
    USER_CLASS_DATA,
    VENDOR_CLASS_DATA,
    DHCP6_RelayForward,
    DHCP6_Reply,
    DHCP6_Solicit,
    DHCP6OptClientArchType,
    DHCP6OptClientId,
    DHCP6OptClientLinkLayerAddr,
    DHCP6OptElapsedTime,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
    DHCP6OptRelayMsg,
    DHCP6OptUserClass,
    DHCP6OptVendorClass,
)

from pxelab.dhcp6.options import (
    IaAddress,
    IaNa,
    StatusCode,
    arch_codes,
    build_ia_na,
    build_iaaddr,
    duid_ll,
    duid_mac,
    eui64_mac,
    linklayer_mac,
    parse_ia_na,
    parse_status,
    status,
    user_classes,
    vendor_class,
)
from pxelab.dhcp6.packet import (
    Dhcp6Message,
    MessageType,
    OptionCode,
    RelayMessage,
    build,
    parse,
)
from pxelab.errors import MalformedPacket

MAC = "52:54:00:12:34:56"

v6 = st.integers(0, 2**128 - 1).map(IPv6Address)
options = st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=80)), max_size=8).map(tuple)
client_types = st.sampled_from(
    [t for t in MessageType if t not in (MessageType.RELAY_FORW, MessageType.RELAY_REPL)]
)
messages = st.one_of(
    st.builds(Dhcp6Message, client_types, st.integers(0, 2**24 - 1), options),
    st.builds(
        RelayMessage,
        st.sampled_from([MessageType.RELAY_FORW, MessageType.RELAY_REPL]),
        st.integers(0, 255),
        v6,
        v6,
        options,
    ),
)


@settings(max_examples=300)
@given(messages)
def test_round_trip(message: Dhcp6Message | RelayMessage) -> None:
    assert parse(build(message)) == message


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    try:
        message = parse(data)
    except MalformedPacket:
        return
    assert build(message) == data  # whatever parses, rebuilds to the same bytes


@settings(max_examples=300)
@given(st.binary(max_size=80))
def test_option_readers_raise_only_malformed(value: bytes) -> None:
    for reader in (parse_ia_na, arch_codes, user_classes, vendor_class, parse_status):
        with contextlib.suppress(MalformedPacket):
            reader(value)
    for probe in (duid_mac, linklayer_mac):
        result = probe(value)
        assert result is None or len(result) == 17


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x00abc", "message type 0"),
        (b"\x01\x00", "at least 4"),
        (b"\x0c" + bytes(20), "needs 34"),
        (b"\x01\x00\x00\x01\x00\x01\x00\x09abc", "claims 9 bytes"),
        (b"\x01\x00\x00\x01\x00\x01", "stray bytes"),
    ],
)
def test_malformed_says_why(data: bytes, why: str) -> None:
    with pytest.raises(MalformedPacket, match=why):
        parse(data)


def test_scapy_solicit_parses() -> None:
    """An EDK2-like PXE SOLICIT built by scapy, read by our codec and option readers."""
    solicit = (
        DHCP6_Solicit(trid=0xABCDEF)
        / DHCP6OptClientId(duid=DUID_LLT(lladdr=MAC, timeval=12345))
        / DHCP6OptIA_NA(iaid=7, T1=0, T2=0)
        / DHCP6OptElapsedTime()
        / DHCP6OptClientArchType(archtypes=[7])
        / DHCP6OptVendorClass(
            enterprisenum=343, vcdata=[VENDOR_CLASS_DATA(data=b"PXEClient:Arch:00007:UNDI:003016")]
        )
        / DHCP6OptUserClass(userclassdata=[USER_CLASS_DATA(data=b"iPXE")])
    )
    message = parse(bytes(solicit))
    assert isinstance(message, Dhcp6Message)
    assert message.msg_type is MessageType.SOLICIT and message.transaction_id == 0xABCDEF
    assert duid_mac(message.option(OptionCode.CLIENTID) or b"") == MAC
    assert parse_ia_na(message.option(OptionCode.IA_NA) or b"").iaid == 7
    assert arch_codes(message.option(OptionCode.CLIENT_ARCH_TYPE) or b"") == (7,)
    enterprise, items = vendor_class(message.option(OptionCode.VENDOR_CLASS) or b"")
    assert enterprise == 343 and items == (b"PXEClient:Arch:00007:UNDI:003016",)
    assert user_classes(message.option(OptionCode.USER_CLASS) or b"") == (b"iPXE",)
    assert build(message) == bytes(solicit)


def test_our_reply_scapy_reads() -> None:
    address = IPv6Address("2001:db8:77::1000")
    ia = IaNa(9, 1800, 2880, ((OptionCode.IAADDR, build_iaaddr(IaAddress(address, 3600, 3600))),))
    reply = Dhcp6Message(
        MessageType.REPLY,
        0x123456,
        (
            (OptionCode.CLIENTID, duid_ll(bytes.fromhex("525400123456"))),
            (OptionCode.IA_NA, build_ia_na(ia)),
            status(StatusCode.SUCCESS, "ok"),
            (OptionCode.BOOTFILE_URL, b"tftp://[2001:db8:77::1]/ipxe.efi"),
        ),
    )
    seen = DHCP6_Reply(build(reply))
    assert seen.trid == 0x123456
    assert seen[DHCP6OptClientId].duid.lladdr == MAC
    assert isinstance(seen[DHCP6OptClientId].duid, DUID_LL)
    assert seen[DHCP6OptIA_NA].iaid == 9 and seen[DHCP6OptIA_NA].T1 == 1800
    assert seen[DHCP6OptIAAddress].addr == str(address)
    assert seen[DHCP6OptIAAddress].validlft == 3600
    assert bytes(seen)[4:] == build(reply)[4:]


def test_scapy_relay_forward_parses() -> None:
    inner = DHCP6_Solicit(trid=1) / DHCP6OptClientId(duid=DUID_LL(lladdr=MAC))
    relay = (
        DHCP6_RelayForward(hopcount=0, linkaddr="2001:db8:99::1", peeraddr="fe80::1")
        / DHCP6OptClientLinkLayerAddr(clladdr=MAC)
        / DHCP6OptRelayMsg(message=inner)
    )
    message = parse(bytes(relay))
    assert isinstance(message, RelayMessage)
    assert message.link_address == IPv6Address("2001:db8:99::1")
    assert linklayer_mac(message.option(OptionCode.CLIENT_LINKLAYER_ADDR) or b"") == MAC
    assert parse(message.option(OptionCode.RELAY_MSG) or b"") == parse(bytes(inner))


def test_duids_and_eui64() -> None:
    assert duid_mac(bytes(DUID_LLT(lladdr=MAC))) == MAC
    assert duid_mac(bytes(DUID_LL(lladdr=MAC))) == MAC
    assert duid_mac(b"\x00\x04" + bytes(16)) is None  # DUID-UUID names no MAC
    assert eui64_mac(IPv6Address("fe80::5054:ff:fe12:3456")) == MAC
    assert eui64_mac(IPv6Address("fe80::1")) is None

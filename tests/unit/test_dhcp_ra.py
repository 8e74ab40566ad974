"""The router advertisement pxelab sends, read back by scapy; what counts as a solicitation."""

from __future__ import annotations

from ipaddress import IPv6Network

from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
)

from pxelab.dhcp.ra import build_ra, is_solicitation


def test_ra_is_minimal_and_scapy_reads_it() -> None:
    ra = ICMPv6ND_RA(build_ra(bytes.fromhex("525400aabbcc")))
    assert ra.type == 134 and ra.code == 0
    assert ra.routerlifetime == 0  # never a default router
    assert ra.M == 0 and ra.O == 0  # no DHCPv6: iPXE stops waiting at once
    assert ra[ICMPv6NDOptSrcLLAddr].lladdr == "52:54:00:aa:bb:cc"


def test_solicitations() -> None:
    assert is_solicitation(bytes(ICMPv6ND_RS()))
    assert not is_solicitation(build_ra(bytes(6)))
    assert not is_solicitation(b"\x85")
    assert not is_solicitation(b"\x85\x01" + bytes(6))  # code must be 0


def test_ra_with_prefix_sets_m_and_o_and_carries_the_prefix() -> None:
    ra = ICMPv6ND_RA(build_ra(bytes.fromhex("525400aabbcc"), IPv6Network("2001:db8:77::/64")))
    assert ra.M == 1 and ra.O == 1
    assert ra.routerlifetime == 0  # not a default router unless ipv6_router
    info = ra[ICMPv6NDOptPrefixInfo]
    assert info.prefix == "2001:db8:77::" and info.prefixlen == 64
    assert info.L == 1 and info.A == 0  # on-link; addresses from DHCPv6, not SLAAC
    assert info.validlifetime > 0
    assert ra[ICMPv6NDOptSrcLLAddr].lladdr == "52:54:00:aa:bb:cc"


def test_router_lifetime_only_with_ipv6_router_and_a_prefix() -> None:
    mac = bytes.fromhex("525400aabbcc")
    assert ICMPv6ND_RA(build_ra(mac, IPv6Network("2001:db8::/64"), router=True)).routerlifetime
    assert ICMPv6ND_RA(build_ra(mac, None, router=True)).routerlifetime == 0
    assert build_ra(mac) == build_ra(mac, None)  # today's RA without a prefix

"""The router advertisement pxelab sends, read back by scapy; what counts as a solicitation."""

from __future__ import annotations

from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptSrcLLAddr

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

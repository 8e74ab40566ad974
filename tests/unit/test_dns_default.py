"""The DNS servers DHCP hands out when `dns` is not set: resolv.conf, systemd-resolved's upstream
list behind its stub, loopback skipped; `dns = []` and `--dns none` send none."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pxelab.app.config import build_config
from pxelab.app.dns import (
    RESOLV_CONF,
    RESOLVED_STUB,
    RESOLVED_UPSTREAM,
    dns_choice,
    host_resolvers,
    nameservers,
)

IP = IPv4Address


def test_nameservers_reads_ipv4_lines_in_order() -> None:
    text = "# c\nsearch x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver junk\n"
    text += "  nameserver 10.0.0.3 \noptions ndots:2\nnameserver\n"
    assert nameservers(text) == [IP("10.0.0.2"), IP("10.0.0.3")]


def test_loopback_is_skipped(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\nnameserver 10.1.1.1\nnameserver 10.1.1.1\n")
    choice = host_resolvers(resolv, tmp_path / "upstream")
    assert choice.servers == (IP("10.1.1.1"),)
    assert choice.source == f"from {resolv}"
    resolv.write_text("nameserver 127.0.1.1\n")
    assert host_resolvers(resolv, tmp_path / "upstream").servers == ()
    assert "lists no server but loopback" in host_resolvers(resolv, tmp_path / "u").source


def test_the_systemd_resolved_stub_means_its_upstream_list(tmp_path: Path) -> None:
    resolv, upstream = tmp_path / "resolv.conf", tmp_path / "upstream.conf"
    resolv.write_text(f"nameserver {RESOLVED_STUB}\noptions edns0 trust-ad\n")
    upstream.write_text("nameserver 192.168.1.1\nnameserver 9.9.9.9\n")
    choice = host_resolvers(resolv, upstream)
    assert choice.servers == (IP("192.168.1.1"), IP("9.9.9.9"))
    assert str(upstream) in choice.source and "systemd-resolved" in choice.source
    upstream.unlink()
    missing = host_resolvers(resolv, upstream)
    assert missing.servers == () and f"cannot read {upstream}" in missing.source


def test_an_unreadable_resolv_conf_gives_none_and_says_why(tmp_path: Path) -> None:
    choice = host_resolvers(tmp_path / "nope", tmp_path / "u")
    assert choice.servers == () and choice.source.startswith(f"none: cannot read {tmp_path}/nope")


def test_the_setting_wins_and_proxy_mode_hands_out_none(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.1.1.1\n")
    assert dns_choice((IP("10.0.0.53"),), "full", resolv).servers == (IP("10.0.0.53"),)
    assert dns_choice((), "full", resolv).servers == ()
    assert dns_choice(None, "proxy", resolv).servers == ()
    assert dns_choice(None, "full", resolv).servers == (IP("10.1.1.1"),)


def test_the_real_default_reads_this_hosts_files() -> None:
    """The defaults are the real paths; what they give follows the same rule (no query sent)."""
    choice = host_resolvers()
    listed = nameservers(RESOLV_CONF.read_text()) if RESOLV_CONF.exists() else []
    if RESOLVED_STUB in listed:
        listed = nameservers(RESOLVED_UPSTREAM.read_text()) if RESOLVED_UPSTREAM.exists() else []
    expected = tuple(dict.fromkeys(a for a in listed if not a.is_loopback and not a.is_unspecified))
    assert choice.servers == expected
    assert choice.source.startswith("from " if expected else "none: ")


@pytest.mark.parametrize(
    ("file", "flags", "expected"),
    [
        ({}, {}, None),
        ({"dns": []}, {}, ()),
        ({}, {"dns": "none"}, ()),
        ({"dns": ["10.0.0.53"]}, {"dns": "NONE"}, ()),
        ({}, {"dns": "10.0.0.53,10.0.0.54"}, (IP("10.0.0.53"), IP("10.0.0.54"))),
    ],
)
def test_dns_setting(
    file: dict[str, object], flags: dict[str, object], expected: tuple[IPv4Address, ...] | None
) -> None:
    assert build_config(file, flags).dns == expected

"""Settings: defaults, TOML, flags over TOML, and one clear error per bad key."""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pxelab.app.config import Config, build_config, read_toml
from pxelab.errors import ConfigError


def test_defaults_expand_home() -> None:
    config = build_config({}, {})
    assert config.hosts_dir == Path("~/.pxelab/hosts").expanduser()
    assert config.interface is None and config.http_port == 8080 and config.tftp_port == 69


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pxelab.toml"
    path.write_text(
        'interface = "br0"\ndhcp_range = "10.0.0.100-10.0.0.200"\nhttp_port = 8000\n'
        'hosts_dir = "/srv/hosts"\ndns = ["1.1.1.1"]\n'
    )
    config = build_config(read_toml(path), {"http_port": "9000", "interface": None}, str(path))
    assert config == Config(
        interface="br0",
        dhcp_range=(IPv4Address("10.0.0.100"), IPv4Address("10.0.0.200")),
        http_port=9000,
        hosts_dir=Path("/srv/hosts"),
        dns=(IPv4Address("1.1.1.1"),),
        profiles_dir=Config().profiles_dir.expanduser(),
        images_dir=Config().images_dir.expanduser(),
        tftp_root=Config().tftp_root.expanduser(),
        state_dir=Config().state_dir.expanduser(),
    )


@pytest.mark.parametrize(
    ("settings", "flags", "message"),
    [
        ({"http_prot": 1}, {}, "f.toml: unknown key 'http_prot'"),
        ({"http_port": 70000}, {}, "f.toml: key 'http_port'"),
        ({}, {"http_port": "eighty"}, "command line: key 'http_port'"),
        ({"address": "10.0.0.256"}, {}, "key 'address'"),
        ({"dhcp_range": "10.0.0.9-10.0.0.1"}, {}, "key 'dhcp_range'"),
        ({"dhcp_range": "10.0.0.9"}, {}, "key 'dhcp_range'"),
        ({"interface": "br0"}, {}, "key 'dhcp_range' is required"),
        ({"log_level": "loud"}, {}, "key 'log_level'"),
        ({"dns": 5}, {}, "key 'dns'"),
        ({"lease_time": True}, {}, "key 'lease_time'"),
    ],
)
def test_bad_settings_name_their_key(
    settings: dict[str, object], flags: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(settings, flags, "f.toml")
    assert message in str(info.value)


def test_unreadable_and_invalid_toml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("http_port = = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        read_toml(bad)


def test_ipv6_keys() -> None:
    config = build_config(
        {"interface": "br0", "ipv6_prefix": "2001:db8:77::/64", "ipv6_dns": ["2001:db8:77::53"]},
        {"ipv6_router": "on", "ipv6_range": "2001:db8:77::100-2001:db8:77::1ff"},
    )
    assert str(config.ipv6_prefix) == "2001:db8:77::/64" and config.ipv6_router
    assert config.dhcp_range is None  # IPv6 only: no IPv4 pool needed
    assert [str(a) for a in config.ipv6_range or ()] == ["2001:db8:77::100", "2001:db8:77::1ff"]
    assert [str(a) for a in config.ipv6_dns] == ["2001:db8:77::53"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ipv6_prefix": "2001:db8::/129"}, "key 'ipv6_prefix'"),
        ({"ipv6_prefix": "2001:db8::/124"}, "too small"),
        ({"ipv6_router": True}, "key 'ipv6_router' needs 'ipv6_prefix'"),
        ({"ipv6_prefix": "2001:db8::/64", "ipv6_range": "2001:db9::1-2001:db9::9"}, "not in"),
        ({"ipv6_prefix": "2001:db8::/64", "dhcp_mode": "proxy"}, "proxy DHCPv6"),
        ({"ipv6_dns": ["10.0.0.1"]}, "key 'ipv6_dns'"),
    ],
)
def test_ipv6_key_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_config(settings, {}, "lab.toml")

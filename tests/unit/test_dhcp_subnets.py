"""DHCP settings: relayed subnets (TOML tables and the flag form), mode, unknown MACs, RA switch."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest

from pxelab.app.config import build_config
from pxelab.app.dhcp import contexts, split_interfaces
from pxelab.dhcp.context import DhcpMode, UnknownMacs
from pxelab.dhcp.subnets import RelaySubnet, parse_subnets
from pxelab.errors import ConfigError

NET = IPv4Network("10.1.0.0/24")


def test_flag_form_and_toml_tables_agree() -> None:
    flag = parse_subnets(
        "subnets", "10.1.0.0/24=10.1.0.100-10.1.0.199@10.1.0.1; 10.2.0.0/16=10.2.1.1-10.2.1.9"
    )
    toml = parse_subnets(
        "subnets",
        [
            {"network": "10.1.0.0/24", "range": "10.1.0.100-10.1.0.199", "router": "10.1.0.1"},
            {"network": "10.2.0.0/16", "range": "10.2.1.1-10.2.1.9"},
        ],
    )
    assert flag == toml
    assert flag[0] == RelaySubnet(
        NET, IPv4Address("10.1.0.100"), IPv4Address("10.1.0.199"), IPv4Address("10.1.0.1")
    )
    assert flag[1].router is None and flag[1].lease_time is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.1.0.0/24", "is not NET=FIRST-LAST"),
        ("10.1.0.0/33=10.1.0.1-10.1.0.2", "is not an IPv4 network"),
        ("10.1.0.0/24=10.1.0.1", "is not FIRST-LAST"),
        ("10.1.0.0/24=10.1.0.9-10.1.0.1", "10.1.0.1 comes before 10.1.0.9"),
        ("10.1.0.0/24=10.1.0.1-10.9.0.2", "10.9.0.2 is not in 10.1.0.0/24"),
        ("10.1.0.0/24=10.1.0.1-10.1.0.2@nope", "'nope' is not an IPv4 address"),
        ("10.1.0.0/16=10.1.0.1-10.1.0.2;10.1.5.0/24=10.1.5.1-10.1.5.2", "overlap"),
        ([{"network": "10.1.0.0/24", "range": "10.1.0.1-10.1.0.2", "lease": 5}], "unknown field"),
        (
            [{"network": "10.1.0.0/24", "range": "10.1.0.1-10.1.0.2", "lease_time": 5}],
            "lease_time 5",
        ),
        (42, "expected [[subnets]] tables"),
    ],
)
def test_bad_subnets_name_the_key_and_entry(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match="key 'subnets'") as info:
        parse_subnets("subnets", value)
    assert message in str(info.value)


def test_mode_and_policy_settings() -> None:
    config = build_config({}, {"dhcp_mode": "PROXY", "interface": "br0"})
    assert config.dhcp_mode == "proxy" and config.dhcp_range is None  # no pool needed in proxy
    assert build_config({}, {}).dhcp_mode == "full"
    assert build_config({"router_advertisements": False}, {}).router_advertisements is False
    assert build_config({}, {"router_advertisements": "off"}).router_advertisements is False
    for key, value, message in (
        ("dhcp_mode", "half", "expected full or proxy"),
        ("unknown_macs", "drop", "expected serve or ignore"),
        ("router_advertisements", "maybe", "expected on or off"),
    ):
        with pytest.raises(ConfigError, match=f"key '{key}': {message}"):
            build_config({}, {key: value})
    with pytest.raises(ConfigError, match="'dhcp_range' is required"):
        build_config({}, {"interface": "br0"})


SERVER_IF = IPv4Interface("10.0.0.1/24")


def test_contexts_from_settings() -> None:
    config = build_config(
        {
            "subnets": [
                {"network": "10.1.0.0/24", "range": "10.1.0.10-10.1.0.20", "lease_time": 120}
            ]
        },
        {"interface": "br0", "dhcp_range": "10.0.0.100-10.0.0.199", "dns": "10.0.0.53"},
    )
    local, relayed = contexts(config, SERVER_IF, 8080)
    assert local.mode is DhcpMode.FULL and local.unknown_macs is UnknownMacs.SERVE
    assert (local.pool_start, local.pool_end) == (
        IPv4Address("10.0.0.100"),
        IPv4Address("10.0.0.199"),
    )
    (far,) = relayed
    assert far.relayed and far.network == NET and far.server_ip == SERVER_IF.ip
    assert far.lease_time == 120 and far.dns == (IPv4Address("10.0.0.53"),)
    proxy = build_config({}, {"interface": "br0", "dhcp_mode": "proxy"})
    local, relayed = contexts(proxy, SERVER_IF, 8080)
    assert local.mode is DhcpMode.PROXY and local.unknown_macs is UnknownMacs.IGNORE


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"dhcp_range": "10.9.0.100-10.9.0.199"},
            "key 'dhcp_range': 10.9.0.100 is not in br0's network",
        ),
        ({"router": "10.9.0.1"}, "key 'router': 10.9.0.1 is not in br0's network"),
        ({"subnets": "10.0.0.0/16=10.0.5.1-10.0.5.9"}, "key 'subnets': 10.0.0.0/16 overlaps"),
    ],
)
def test_contexts_errors_name_the_key(settings: dict[str, str], message: str) -> None:
    config = build_config(
        {}, {"interface": "br0", "dhcp_range": "10.0.0.100-10.0.0.199", **settings}
    )
    with pytest.raises(ConfigError, match=message):
        contexts(config, SERVER_IF, 8080)


def test_more_interfaces_take_their_subnet_from_subnets() -> None:
    config = build_config(
        {"subnets": "10.1.0.0/24=10.1.0.10-10.1.0.20;10.2.0.0/24=10.2.0.10-10.2.0.20"},
        {"interface": "br0", "dhcp_range": "10.0.0.100-10.0.0.199", "dhcp_interfaces": "br1"},
    )
    assert config.dhcp_interfaces == ("br1",)
    _, relayed = contexts(config, SERVER_IF, 8080)
    still_relayed, more = split_interfaces(relayed, {"br1": IPv4Interface("10.2.0.1/24")})
    assert [c.network for c in still_relayed] == [NET]
    ((name, ctx),) = more
    assert name == "br1" and ctx.server_ip == IPv4Address("10.2.0.1") and not ctx.relayed
    with pytest.raises(
        ConfigError, match=r"br2 is on 10\.9\.0\.0/24, which has no entry in 'subnets'"
    ):
        split_interfaces(relayed, {"br2": IPv4Interface("10.9.0.1/24")})
    for bad in ("br0,br0", "a/b", "x" * 16):
        with pytest.raises(ConfigError, match="key 'dhcp_interfaces'"):
            build_config({}, {"dhcp_interfaces": bad})

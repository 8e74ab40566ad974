"""Reading an interface's IPv4 address: found, missing interface, bad name."""

from __future__ import annotations

from ipaddress import IPv4Interface

import pytest

from pxelab.dhcp.interface import interface_ipv4, interface_mac
from pxelab.errors import ConfigError


def test_loopback_address_and_prefix() -> None:
    assert interface_ipv4("lo") == IPv4Interface("127.0.0.1/8")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuchif0", "interface 'nosuchif0' does not exist"),
        ("x" * 16, "is not a valid interface name"),
        ("", "is not a valid interface name"),
    ],
)
def test_errors_name_the_interface(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        interface_ipv4(name)


def test_interface_mac_from_sysfs() -> None:
    assert interface_mac("lo") == bytes(6)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuchif0", "interface 'nosuchif0' does not exist"),
        ("..", "is not a valid interface name"),
        ("a/b", "is not a valid interface name"),
    ],
)
def test_interface_mac_errors_name_the_interface(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        interface_mac(name)

"""Settings for DHCP beyond the local subnet: subnets behind relays, mode and unknown-MAC policy.

Pure parsing for pxelab/app/config.py; every error names the key and the offending entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pxelab.errors import ConfigError


@dataclass(frozen=True)
class RelaySubnet:
    """One subnet reached through DHCP relays (chosen by the giaddr of a relayed request)."""

    network: IPv4Network
    """The subnet; a relayed request whose giaddr lies in it is served from `first`-`last`."""
    first: IPv4Address
    """First pool address."""
    last: IPv4Address
    """Last pool address, inclusive."""
    router: IPv4Address | None = None
    """Option 3 for this subnet (usually the relay's own address)."""
    lease_time: int | None = None
    """Lease seconds for this subnet; None means the global `lease_time`."""
    dns: tuple[IPv4Address, ...] | None = None
    """DNS servers for this subnet; None means the global `dns`."""


def _address(key: str, where: str, value: Any) -> IPv4Address:
    try:
        return IPv4Address(str(value).strip())
    except ValueError:
        raise ConfigError(f"key {key!r}: {where}: {value!r} is not an IPv4 address") from None


def _one(key: str, where: str, entry: dict[str, Any]) -> RelaySubnet:
    unknown = set(entry) - {"network", "range", "router", "lease_time", "dns"}
    if unknown:
        raise ConfigError(f"key {key!r}: {where}: unknown field(s) {', '.join(sorted(unknown))}")
    try:
        network = IPv4Network(str(entry.get("network", "")).strip())
    except ValueError:
        raise ConfigError(
            f"key {key!r}: {where}: network {entry.get('network')!r} is not an IPv4 network "
            "like 10.1.0.0/24"
        ) from None
    span = str(entry.get("range", ""))
    if span.count("-") != 1:
        raise ConfigError(f"key {key!r}: {where}: range {span!r} is not FIRST-LAST")
    first, last = (_address(key, where, part) for part in span.split("-"))
    for ip in (first, last):
        if ip not in network:
            raise ConfigError(f"key {key!r}: {where}: {ip} is not in {network}")
    if last < first:
        raise ConfigError(f"key {key!r}: {where}: {last} comes before {first}")
    router = entry.get("router")
    lease_time = entry.get("lease_time")
    if lease_time is not None and (
        not isinstance(lease_time, int) or isinstance(lease_time, bool) or lease_time < 60
    ):
        raise ConfigError(f"key {key!r}: {where}: lease_time {lease_time!r} is not >= 60 seconds")
    dns = entry.get("dns")
    if isinstance(dns, str):
        dns = [d for d in dns.split(",") if d.strip()]
    return RelaySubnet(
        network,
        first,
        last,
        _address(key, where, router) if router not in (None, "") else None,
        lease_time,
        tuple(_address(key, where, d) for d in dns) if dns is not None else None,
    )


def parse_subnets(key: str, value: Any) -> tuple[RelaySubnet, ...]:
    """TOML `[[subnets]]` tables, or the flag form "NET=FIRST-LAST[@ROUTER][;NET=…]"."""
    if value in (None, ""):
        return ()
    entries: list[dict[str, Any]] = []
    if isinstance(value, str):
        for item in (part.strip() for part in value.split(";")):
            if not item:
                continue
            network, sep, rest = item.partition("=")
            if not sep:
                raise ConfigError(f"key {key!r}: {item!r} is not NET=FIRST-LAST[@ROUTER]")
            span, _, router = rest.partition("@")
            entries.append({"network": network, "range": span, "router": router or None})
    elif isinstance(value, list) and all(isinstance(v, dict) for v in value):
        entries = value
    else:
        raise ConfigError(f"key {key!r}: expected [[subnets]] tables or NET=FIRST-LAST[@ROUTER]")
    subnets = tuple(_one(key, f"subnet {i + 1}", entry) for i, entry in enumerate(entries))
    for i, a in enumerate(subnets):
        for b in subnets[i + 1 :]:
            if a.network.overlaps(b.network):
                raise ConfigError(f"key {key!r}: subnets {a.network} and {b.network} overlap")
    return subnets


def parse_choice(*choices: str) -> Any:
    """A checker for a key that takes one of `choices` (or empty for the default)."""

    def check(key: str, value: Any) -> str | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text not in choices:
            raise ConfigError(f"key {key!r}: expected {' or '.join(choices)}, got {value!r}")
        return text

    return check


def parse_switch(key: str, value: Any) -> bool:
    """A boolean key: TOML true/false, or on/off, yes/no, true/false, 1/0 as a flag."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("on", "yes", "true", "1"):
        return True
    if text in ("off", "no", "false", "0"):
        return False
    raise ConfigError(f"key {key!r}: expected on or off, got {value!r}")


def parse_mode(key: str, value: Any) -> str:
    """`dhcp_mode`: full (the default) or proxy."""
    mode: str | None = parse_choice("full", "proxy")(key, value)
    return mode or "full"


def parse_interfaces(key: str, value: Any) -> tuple[str, ...]:
    """A list of interface names (TOML list, or `a,b` as a flag)."""
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"key {key!r}: expected a list of interface names, got {value!r}")
    for name in value:
        if len(name.encode()) >= 16 or "/" in name or " " in name:
            raise ConfigError(f"key {key!r}: {name!r} is not a valid interface name")
    if len(set(value)) != len(value):
        raise ConfigError(f"key {key!r}: an interface is listed twice")
    return tuple(value)

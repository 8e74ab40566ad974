"""Settings: defaults, then a TOML file, then command-line flags; every error names its key.

`build_config` is pure apart from expanding `~`; nothing here opens sockets or checks the disk.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from pxelab.dhcp.subnets import (
    RelaySubnet,
    parse_choice,
    parse_interfaces,
    parse_mode,
    parse_subnets,
    parse_switch,
)
from pxelab.errors import ConfigError

HOME = Path("~/.pxelab")


@dataclass(frozen=True)
class Config:
    """Everything `pxelab serve` needs to know; see the README's config reference."""

    interface: str | None = None
    """Interface to answer DHCP on; without it pxelab runs TFTP and HTTP only."""
    address: IPv4Address | None = None
    """This server's IPv4 address on `interface`; read from the interface when unset."""
    dhcp_range: tuple[IPv4Address, IPv4Address] | None = None
    """First and last address of the DHCP pool (inclusive)."""
    router: IPv4Address | None = None
    """Default gateway handed to DHCP clients (option 3); none when unset."""
    dns: tuple[IPv4Address, ...] | None = None
    """DNS servers handed to DHCP clients (option 6); None: the host's own upstream resolvers
    (full mode), empty: none."""
    resolv_conf: Path = Path("/etc/resolv.conf")
    """Where the host's resolvers are read when `dns` is not set."""
    lease_time: int = 3600
    """DHCP lease time in seconds."""
    dhcp_port: int = 67
    """UDP port the DHCP server listens on."""
    dhcp_mode: str = "full"
    """full (addresses and boot information) or proxy (boot information beside another server)."""
    unknown_macs: str | None = None
    """serve or ignore clients missing from the inventory; None: serve in full, ignore in proxy."""
    subnets: tuple[RelaySubnet, ...] = ()
    """Subnets behind DHCP relays, each with its own range (and router, lease time, DNS)."""
    dhcp_interfaces: tuple[str, ...] = ()
    """More interfaces DHCP answers on, each with a `subnets` entry for its own network."""
    router_advertisements: bool = True
    """Answer IPv6 router solicitations on `interface` (full mode), so iPXE does not wait for one."""
    ipv6_prefix: IPv6Network | None = None
    """IPv6 prefix of `interface`'s link: advertised in RAs (M and O flags) and served by DHCPv6."""
    ipv6_router: bool = False
    """With `ipv6_prefix`: RAs name this server as the link's default router."""
    ipv6_range: tuple[IPv6Address, IPv6Address] | None = None
    """DHCPv6 pool (inclusive); default ::1000 to ::ffff of `ipv6_prefix`."""
    ipv6_dns: tuple[IPv6Address, ...] = ()
    """DNS servers handed to DHCPv6 clients (option 23)."""
    hosts_dir: Path = HOME / "hosts"
    """Directory of JSON host files (pvmlab's `~/.pvmlab/vms` works unchanged)."""
    profiles_dir: Path = HOME / "profiles"
    """Directory of JSON profiles: host keys shared by many hosts, with selectors."""
    boot_api: str | None = None
    """External boot API: `GET <boot_api>/<mac>` answers a host object or 404; None: not asked."""
    boot_api_mode: str = "fallback"
    """fallback: ask for MACs no host file or profile covers; always: ask first for every MAC."""
    boot_api_ttl: int = 60
    """Seconds a boot API answer (or 404) is cached."""
    syslog_port: int = 514
    """UDP port of the syslog receiver (installer logs on the timeline); 0 turns it off."""
    images_dir: Path = HOME / "images"
    """Kernels, initrds and ISOs, served at `/images/…`."""
    tftp_root: Path = HOME / "tftp"
    """Root of the TFTP server (iPXE binaries); nothing outside it is served."""
    tftp_address: IPv4Address | None = None
    """Address the TFTP server binds to; `address` (or all addresses) when unset."""
    tftp_port: int = 69
    """UDP port of the TFTP server; 0 turns TFTP off."""
    tftp_max_sessions: int = 2048
    """TFTP transfers in flight at most; further requests wait for a slot."""
    tftp_max_per_client: int = 16
    """TFTP transfers in flight from one client IP address at most; further ones wait."""
    tftp_max_queued: int = 1024
    """TFTP requests waiting for a slot at most; further ones are dropped (clients retry)."""
    tftp_windowsize_max: int = 64
    """Largest TFTP windowsize (RFC 7440) granted to a client."""
    http_address: str = "0.0.0.0"
    """Address the HTTP server binds to."""
    http_port: int = 8080
    """TCP port of the HTTP server; 0 picks a free one (it is logged)."""
    https_port: int = 8443
    """TCP port of the HTTPS server (with tls_cert and tls_key); 0 picks a free one."""
    tls_cert: Path | None = None
    """PEM certificate (chain) for HTTPS; without it and tls_key there is no HTTPS."""
    tls_key: Path | None = None
    """PEM private key of tls_cert."""
    api_auth: str = "writes"
    """writes: every state-changing request needs a token; all: also /api/*, /metrics, /."""
    api_https_only: bool = False
    """Refuse state-changing requests that come over plain HTTP (signed callbacks excepted)."""
    state_dir: Path = HOME / "state"
    """Where pxelab keeps its state (leases, install states)."""
    state_url: str | None = None
    """PostgreSQL shared by several instances (postgresql://user@host:port/db); None: SQLite."""
    templates_dir: Path | None = None
    """Templates here override the shipped ones, file by file."""
    log_level: str = "info"
    """debug, info, warning or error."""
    user: str | None = None
    """Drop root to this user once the sockets are bound (the state dir becomes theirs)."""


def _ip(key: str, value: Any) -> IPv4Address:
    if not isinstance(value, str):
        raise ConfigError(f"key {key!r}: expected an IPv4 address as a string, got {value!r}")
    try:
        return IPv4Address(value.strip())
    except ValueError:
        raise ConfigError(f"key {key!r}: {value!r} is not an IPv4 address") from None


def _opt_ip(key: str, value: Any) -> IPv4Address | None:
    return None if value in (None, "") else _ip(key, value)


def _range(key: str, value: Any) -> tuple[IPv4Address, IPv4Address] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.count("-") == 1:
        first_s, last_s = value.split("-")
        first, last = _ip(key, first_s), _ip(key, last_s)
    elif isinstance(value, list) and len(value) == 2:
        first, last = _ip(key, value[0]), _ip(key, value[1])
    else:
        raise ConfigError(f"key {key!r}: expected FIRST-LAST, e.g. 10.0.0.100-10.0.0.200")
    if int(last) < int(first):
        raise ConfigError(f"key {key!r}: {last} comes before {first}")
    return first, last


def _ips(key: str, value: Any) -> tuple[IPv4Address, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"key {key!r}: expected a list of IPv4 addresses")
    return tuple(_ip(key, v) for v in value)


def _dns(key: str, value: Any) -> tuple[IPv4Address, ...] | None:
    """`none` (or an empty list) sends no DNS server; unset (None) means the host's own."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("none", ""):
        return ()
    return _ips(key, value)


def _ip6(key: str, value: Any) -> IPv6Address:
    if not isinstance(value, str):
        raise ConfigError(f"key {key!r}: expected an IPv6 address as a string, got {value!r}")
    try:
        return IPv6Address(value.strip())
    except ValueError:
        raise ConfigError(f"key {key!r}: {value!r} is not an IPv6 address") from None


def _prefix6(key: str, value: Any) -> IPv6Network | None:
    if value in (None, ""):
        return None
    try:
        prefix = IPv6Network(str(value).strip())
    except ValueError:
        raise ConfigError(
            f"key {key!r}: {value!r} is not an IPv6 prefix (e.g. 2001:db8:77::/64)"
        ) from None
    if prefix.prefixlen > 120:
        raise ConfigError(f"key {key!r}: {prefix} is too small for a pool (at most /120)")
    return prefix


def _range6(key: str, value: Any) -> tuple[IPv6Address, IPv6Address] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.count("-") == 1:
        first, last = (_ip6(key, v) for v in value.split("-"))
    elif isinstance(value, list) and len(value) == 2:
        first, last = _ip6(key, value[0]), _ip6(key, value[1])
    else:
        raise ConfigError(f"key {key!r}: expected FIRST-LAST, e.g. 2001:db8::1000-2001:db8::1fff")
    if last < first:
        raise ConfigError(f"key {key!r}: {last} comes before {first}")
    return first, last


def _ips6(key: str, value: Any) -> tuple[IPv6Address, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"key {key!r}: expected a list of IPv6 addresses")
    return tuple(_ip6(key, v) for v in value)


def _int(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ConfigError(
                f"key {key!r}: expected a whole number from {lo} to {hi}, got {value!r}"
            )
        return value

    return check


def _path(key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"key {key!r}: expected a path, got {value!r}")
    return Path(value).expanduser()


def _opt_path(key: str, value: Any) -> Path | None:
    return None if value in (None, "") else _path(key, value)


def _opt_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"key {key!r}: expected a string, got {value!r}")
    return value


def _str(key: str, value: Any) -> str:
    text = _opt_str(key, value)
    if text is None:
        raise ConfigError(f"key {key!r}: must not be empty")
    return text


def _api_auth(key: str, value: Any) -> str:
    return parse_choice("writes", "all")(key, value) or "writes"


def _state_url(key: str, value: Any) -> str | None:
    text = _opt_str(key, value)
    if text is not None and not text.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            f"key {key!r}: expected postgresql://user@host:port/db "
            f"(or postgresql:///db?host=/socket/dir), got {value!r}"
        )
    return text


def _boot_api(key: str, value: Any) -> str | None:
    text = _opt_str(key, value)
    if text is not None and not text.startswith(("http://", "https://")):
        raise ConfigError(f"key {key!r}: expected an http:// or https:// URL, got {value!r}")
    return text


def _level(key: str, value: Any) -> str:
    text = _str(key, value).lower()
    if text not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"key {key!r}: expected debug, info, warning or error, got {value!r}")
    return text


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "interface": _opt_str,
    "address": _opt_ip,
    "dhcp_range": _range,
    "router": _opt_ip,
    "dns": _dns,
    "resolv_conf": _path,
    "lease_time": _int(60, 2**31 - 1),
    "dhcp_port": _int(1, 65535),
    "dhcp_mode": parse_mode,
    "unknown_macs": parse_choice("serve", "ignore"),
    "subnets": parse_subnets,
    "dhcp_interfaces": parse_interfaces,
    "router_advertisements": parse_switch,
    "ipv6_prefix": _prefix6,
    "ipv6_router": parse_switch,
    "ipv6_range": _range6,
    "ipv6_dns": _ips6,
    "hosts_dir": _path,
    "profiles_dir": _path,
    "boot_api": _boot_api,
    "boot_api_mode": lambda key, value: (
        parse_choice("fallback", "always")(key, value) or "fallback"
    ),
    "boot_api_ttl": _int(1, 86400),
    "syslog_port": _int(0, 65535),
    "images_dir": _path,
    "tftp_root": _path,
    "tftp_address": _opt_ip,
    "tftp_port": _int(0, 65535),
    "tftp_max_sessions": _int(1, 65535),
    "tftp_max_per_client": _int(1, 65535),
    "tftp_max_queued": _int(0, 65535),
    "tftp_windowsize_max": _int(1, 65535),
    "http_address": _str,
    "http_port": _int(0, 65535),
    "https_port": _int(0, 65535),
    "tls_cert": _opt_path,
    "tls_key": _opt_path,
    "api_auth": _api_auth,
    "api_https_only": parse_switch,
    "state_dir": _path,
    "state_url": _state_url,
    "templates_dir": _opt_path,
    "log_level": _level,
    "user": _opt_str,
}
if set(_CHECKS) != {f.name for f in fields(Config)}:
    raise RuntimeError(  # a programming error: a Config field without a check, or the reverse
        f"app/config.py: _CHECKS and Config differ: {set(_CHECKS) ^ {f.name for f in fields(Config)}}"
    )


def read_toml(path: Path) -> dict[str, Any]:
    """The settings in a TOML file; a ConfigError names the file when it is unreadable."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def build_config(
    file_settings: Mapping[str, Any], overrides: Mapping[str, Any], source: str = "config"
) -> Config:
    """Defaults, overlaid by a file's settings, overlaid by flags (None = not given)."""
    values: dict[str, Any] = {}
    for key, value in file_settings.items():
        if key not in _CHECKS:
            known = ", ".join(sorted(_CHECKS))
            raise ConfigError(f"{source}: unknown key {key!r} (known keys: {known})")
        values[key] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    checked: dict[str, Any] = {}
    for key, value in values.items():
        try:
            checked[key] = _CHECKS[key](key, value)
        except ConfigError as exc:
            where = "command line" if overrides.get(key) is not None else source
            raise ConfigError(f"{where}: {exc}") from None
    config = Config(**checked)
    for key in ("hosts_dir", "profiles_dir", "images_dir", "tftp_root", "state_dir"):
        if key not in checked:
            checked[key] = getattr(config, key).expanduser()
    config = Config(**checked)
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError(f"{source}: keys 'tls_cert' and 'tls_key' go together (PEM files)")
    if config.api_https_only and config.tls_cert is None:
        raise ConfigError(f"{source}: key 'api_https_only' needs HTTPS: set tls_cert and tls_key")
    no_range = config.dhcp_range is None and config.dhcp_mode == "full"
    if config.interface and no_range and config.ipv6_prefix is None:
        raise ConfigError(
            f"{source}: key 'dhcp_range' is required when 'interface' is set "
            '(e.g. dhcp_range = "10.0.0.100-10.0.0.200"), unless ipv6_prefix is (IPv6 only)'
        )
    if config.ipv6_prefix is not None and config.ipv6_range is not None:
        for ip in config.ipv6_range:
            if ip not in config.ipv6_prefix:
                raise ConfigError(
                    f"{source}: key 'ipv6_range': {ip} is not in {config.ipv6_prefix}"
                )
    if config.ipv6_prefix is not None and config.dhcp_mode != "full":
        raise ConfigError(
            f"{source}: key 'ipv6_prefix' needs dhcp_mode = full (proxy DHCPv6: see the README)"
        )
    if config.ipv6_router and config.ipv6_prefix is None:
        raise ConfigError(f"{source}: key 'ipv6_router' needs 'ipv6_prefix'")
    return config

"""Flags shared by every command that reads settings: `--config FILE` and one flag per config key."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pxelab.app.config import Config, build_config, read_toml
from pxelab.app.control import open_state
from pxelab.state import StateStore

T = TypeVar("T")

# flag -> config key; every flag overrides the same key of the TOML file.
SERVE_FLAGS: list[tuple[str, str, str]] = [
    ("--interface", "IF", "answer DHCP on this interface (without it: TFTP and HTTP only)"),
    ("--address", "IP", "this server's address on --interface (default: the interface's own)"),
    ("--dhcp-range", "FIRST-LAST", "DHCP pool, e.g. 10.0.0.100-10.0.0.200"),
    ("--router", "IP", "default gateway handed to DHCP clients"),
    (
        "--dns",
        "IP[,IP]|none",
        "DNS servers handed to DHCP clients (default: this host's upstream resolvers)",
    ),
    ("--resolv-conf", "FILE", "where the default DNS servers are read (default /etc/resolv.conf)"),
    ("--lease-time", "SECONDS", "DHCP lease time"),
    ("--dhcp-port", "N", "DHCP server port (default 67)"),
    ("--dhcp-mode", "full|proxy", "full DHCP, or proxyDHCP beside an existing DHCP server"),
    (
        "--unknown-macs",
        "serve|ignore",
        "answer MACs missing from the inventory (default: full mode)",
    ),
    ("--subnets", "NET=FIRST-LAST[@ROUTER][;...]", "pools for subnets behind DHCP relays"),
    ("--dhcp-interfaces", "IF[,IF]", "more interfaces DHCP answers on (pools from --subnets)"),
    ("--router-advertisements", "on|off", "answer IPv6 router solicitations (default on)"),
    ("--ipv6-prefix", "PREFIX", "IPv6 prefix of --interface: RAs with it, and DHCPv6"),
    ("--ipv6-router", "on|off", "RAs name this server the default router (needs --ipv6-prefix)"),
    ("--ipv6-range", "FIRST-LAST", "DHCPv6 pool (default ::1000-::ffff of the prefix)"),
    ("--ipv6-dns", "IP[,IP]", "DNS servers handed to DHCPv6 clients"),
    ("--hosts-dir", "DIR", "directory of JSON host files (default ~/.pxelab/hosts)"),
    ("--profiles-dir", "DIR", "directory of JSON profiles (default ~/.pxelab/profiles)"),
    ("--boot-api", "URL", "ask GET URL/<mac> for MACs no host file or profile covers"),
    ("--boot-api-mode", "fallback|always", "ask the boot API last (default) or first"),
    ("--boot-api-ttl", "SECONDS", "seconds a boot API answer is cached (default 60)"),
    ("--syslog-port", "N", "UDP syslog receiver port (default 514; 0 turns it off)"),
    (
        "--images-dir",
        "DIR",
        "kernels, initrds and ISOs served at /images/ (default ~/.pxelab/images)",
    ),
    ("--tftp-root", "DIR", "TFTP root with the iPXE binaries (default ~/.pxelab/tftp)"),
    ("--tftp-address", "IP", "address the TFTP server binds to"),
    ("--tftp-port", "N", "TFTP port (default 69; 0 turns TFTP off)"),
    ("--tftp-max-sessions", "N", "TFTP transfers in flight at most (default 512)"),
    ("--tftp-max-per-client", "N", "TFTP transfers in flight per client IP (default 16)"),
    ("--tftp-windowsize-max", "N", "largest TFTP windowsize granted (default 64)"),
    ("--http-address", "IP", "address the HTTP server binds to (default 0.0.0.0)"),
    ("--http-port", "N", "HTTP port (default 8080; 0 picks a free port)"),
    ("--https-port", "N", "HTTPS port, with --tls-cert and --tls-key (default 8443)"),
    ("--tls-cert", "FILE", "PEM certificate: serve the same app over HTTPS too"),
    ("--tls-key", "FILE", "PEM private key of --tls-cert"),
    ("--api-auth", "writes|all", "what needs a token: writes (default) or all but boot paths"),
    ("--api-https-only", "on|off", "refuse state-changing requests over plain HTTP"),
    ("--state-dir", "DIR", "state directory (default ~/.pxelab/state)"),
    ("--state-url", "URL", "PostgreSQL shared by several instances: postgresql://user@host/db"),
    ("--templates-dir", "DIR", "templates here override the shipped ones"),
    ("--log-level", "LEVEL", "debug, info, warning or error"),
    ("--user", "NAME", "drop root to this user once the ports are bound"),
]


def add_settings_flags(parser: argparse.ArgumentParser, keys: Iterable[str] | None = None) -> None:
    """`--config FILE` and the flags of the given config keys (all when None)."""
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML settings file")
    wanted = None if keys is None else set(keys)
    for flag, metavar, help_text in SERVE_FLAGS:
        if wanted is None or flag[2:].replace("-", "_") in wanted:
            parser.add_argument(flag, metavar=metavar, help=help_text)


def settings_from_args(args: argparse.Namespace) -> Config:
    """The Config from `--config` and the flags present on args; ConfigError names the key."""
    file_settings: dict[str, Any] = {}
    source = "command line"
    if args.config:
        file_settings = read_toml(args.config)
        source = str(args.config)
    overrides = {
        key: getattr(args, key)
        for key in (flag[2:].replace("-", "_") for flag, _, _ in SERVE_FLAGS)
        if hasattr(args, key)
    }
    return build_config(file_settings, overrides, source)


def with_store(config: Config, work: Callable[[StateStore], Awaitable[T]]) -> T:
    """Open the store, run work, close it (one event loop for the whole command)."""

    async def run() -> T:
        store = await open_state(config)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())

"""Which DNS servers DHCP hands out when `dns` is not set: the lab host's own upstream resolvers.

From `/etc/resolv.conf`, or systemd-resolved's upstream list when resolv.conf points at its stub
(127.0.0.53); loopback addresses are skipped (a client cannot reach this host's loopback).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

RESOLV_CONF = Path("/etc/resolv.conf")
"""Where the host's resolvers are listed."""
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
"""systemd-resolved's list of the upstream servers it forwards to."""
RESOLVED_STUB = IPv4Address("127.0.0.53")
"""systemd-resolved's local stub resolver."""


@dataclass(frozen=True)
class DnsChoice:
    """The DNS servers DHCP clients get (option 6), and why those."""

    servers: tuple[IPv4Address, ...]
    """The addresses, in order; empty: no option 6."""
    source: str
    """Where they came from, for the start-up log line and `explain`."""


def nameservers(text: str) -> list[IPv4Address]:
    """The IPv4 `nameserver` lines of a resolv.conf, in order (IPv6 and junk are skipped). Pure."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                found.append(IPv4Address(words[1]))
            except ValueError:
                continue
    return found


def _read(path: Path) -> tuple[list[IPv4Address], str | None]:
    try:
        return nameservers(path.read_text(encoding="utf-8", errors="replace")), None
    except OSError as exc:
        return [], f"cannot read {path}: {exc.strerror or exc}"


def host_resolvers(
    resolv_conf: Path = RESOLV_CONF, upstream: Path = RESOLVED_UPSTREAM
) -> DnsChoice:
    """This host's upstream resolvers, loopback skipped (blocking: reads one or two files)."""
    servers, error = _read(resolv_conf)
    source = str(resolv_conf)
    if error is not None:
        return DnsChoice((), f"none: {error}")
    if RESOLVED_STUB in servers:
        servers, error = _read(upstream)
        if error is not None:
            return DnsChoice((), f"none: {resolv_conf} points at {RESOLVED_STUB} and {error}")
        source = f"{upstream}, systemd-resolved's upstream servers ({resolv_conf} has its stub)"
    usable = tuple(dict.fromkeys(s for s in servers if not s.is_loopback and not s.is_unspecified))
    if not usable:
        return DnsChoice((), f"none: {source} lists no server but loopback")
    return DnsChoice(usable, f"from {source}")


def dns_choice(
    dns: tuple[IPv4Address, ...] | None,
    mode: str,
    resolv_conf: Path = RESOLV_CONF,
    upstream: Path = RESOLVED_UPSTREAM,
) -> DnsChoice:
    """The `dns` setting when given (`[]` or `none`: no server), else in full mode the host's
    upstream resolvers; proxy mode hands out no address and so no DNS."""
    if dns is not None:
        return DnsChoice(dns, "the 'dns' setting" if dns else "none: 'dns' is set empty")
    if mode != "full":
        return DnsChoice((), "none: proxy mode hands out no addresses")
    return host_resolvers(resolv_conf, upstream)

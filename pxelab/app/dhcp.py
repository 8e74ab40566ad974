"""Build the DHCP service from the settings: contexts per subnet, the lease store, the sockets.

Called by the daemon; every problem is a ConfigError naming the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Generic, Protocol, TypeVar, cast

from pxelab.app.config import Config
from pxelab.app.dns import dns_choice
from pxelab.boot.explain import DhcpHandout
from pxelab.boot.loaders import boot_files_for, present_loaders
from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp.context import DhcpContext, DhcpMode, HostLookup, Sender, UnknownMacs
from pxelab.dhcp.interface import interface_ipv4
from pxelab.dhcp.packet import DhcpPacket
from pxelab.dhcp.server import Observer, start_dhcp
from pxelab.dhcp.traits import client_traits
from pxelab.errors import ConfigError
from pxelab.events import Timeline
from pxelab.hosts.fleet import Fleet
from pxelab.state import Change, StateStore, StoreError

log = logging.getLogger("pxelab.dhcp")

L = TypeVar("L")
"""A lease of one family: pxelab.dhcp.leases.Lease or pxelab.dhcp6.leases.Lease6."""
SYSLOG_PORT = 514
"""Option 7 carries no port: it is offered only when the receiver is on syslog's own port."""


class UsesBootFiles(Protocol):
    """A DHCP or DHCPv6 core, whose boot files follow the TFTP root."""

    def use_boot_files(self, boot_files: BootFiles) -> None: ...


class Closable(Protocol):
    """A started service: DHCP sockets, the RA responder."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class DhcpService:
    """Everything DHCP runs (the sockets and, in full mode, the lease store and the RA responder)."""

    def __init__(self, parts: list[Closable], servers: Sequence[UsesBootFiles] = ()) -> None:
        self.parts = parts
        self.servers = list(servers)

    def use_boot_files(self, boot_files: BootFiles) -> None:
        """Hand out these boot files from now on (the TFTP root's loaders changed)."""
        for server in self.servers:
            server.use_boot_files(boot_files)

    def close(self) -> None:
        """Stop every part; safe to call more than once."""
        for part in self.parts:
            part.close()

    async def wait_closed(self) -> None:
        """Return once every part has stopped."""
        for part in self.parts:
            await part.wait_closed()


def boot_files_in(tftp_root: Path) -> BootFiles:
    """The default boot files, but GRUB for arm64 unless the TFTP root has an arm64 iPXE
    (blocking: stats the TFTP root)."""
    return boot_files_for(present_loaders(tftp_root))


def handout(config: Config, boot_files: BootFiles | None = None) -> DhcpHandout:
    """What DHCP hands every client: the boot files (these, else those the TFTP root holds now;
    the daemon's follow the TFTP root, pxelab.boot.loaders) and the DNS servers, decided at start
    (blocking: may stat the TFTP root and read resolv.conf). The daemon and `pxelab explain`
    both call this."""
    dns = dns_choice(config.dns, config.dhcp_mode, config.resolv_conf)
    files = boot_files if boot_files is not None else boot_files_in(config.tftp_root)
    return DhcpHandout(files, dns.servers, dns.source)


def contexts(
    config: Config, server_if: IPv4Interface, http_port: int, decided: DhcpHandout | None = None
) -> tuple[DhcpContext, list[DhcpContext]]:
    """The local subnet's context and those of the subnets behind relays (with what `handout`
    decided, made now when not given)."""
    decided = decided or handout(config)
    mode = DhcpMode(config.dhcp_mode)
    default_unknown = UnknownMacs.SERVE if mode is DhcpMode.FULL else UnknownMacs.IGNORE
    common = _Common(
        http_port=http_port,
        mode=mode,
        unknown_macs=UnknownMacs(config.unknown_macs) if config.unknown_macs else default_unknown,
        boot_files=decided.boot_files,
        dns=decided.dns,
        log_server=config.syslog_port == SYSLOG_PORT,
    )
    return _local_context(config, server_if, common), _relayed_contexts(config, server_if, common)


@dataclass(frozen=True)
class _Common:
    """The context fields every subnet shares."""

    http_port: int
    """pxelab's HTTP port, for the URLs in boot file names."""
    mode: DhcpMode
    """Full or proxy DHCP."""
    unknown_macs: UnknownMacs
    """Whether clients missing from the inventory are answered."""
    boot_files: BootFiles
    """Boot file per firmware family."""
    dns: tuple[IPv4Address, ...]
    """DNS servers for subnets that set none of their own."""
    log_server: bool
    """Option 7 names this server: its syslog receiver runs on the standard port."""


def _local_context(config: Config, server_if: IPv4Interface, common: _Common) -> DhcpContext:
    """The context of the subnet on `interface`; ConfigError names the key."""
    if common.mode is DhcpMode.FULL:
        if config.dhcp_range is None:
            raise ConfigError("key 'dhcp_range' is required in full mode")
        first, last = config.dhcp_range
    else:
        first = last = server_if.ip  # proxy mode hands out no addresses
    for key, ip in (("dhcp_range", first), ("dhcp_range", last), ("router", config.router)):
        if isinstance(ip, IPv4Address) and ip not in server_if.network:
            raise ConfigError(
                f"key {key!r}: {ip} is not in {config.interface}'s network {server_if.network}"
            )
    try:
        return DhcpContext(
            server_ip=server_if.ip,
            network=server_if.network,
            pool_start=first,
            pool_end=last,
            router=config.router,
            lease_time=config.lease_time,
            **vars(common),
        )
    except ConfigError as exc:
        raise ConfigError(f"key 'dhcp_range': {exc}") from None


def _relayed_contexts(
    config: Config, server_if: IPv4Interface, common: _Common
) -> list[DhcpContext]:
    """The contexts of the subnets in `subnets`; ConfigError names the key and the subnet."""
    relayed = []
    for subnet in config.subnets:
        if subnet.network.overlaps(server_if.network):
            raise ConfigError(
                f"key 'subnets': {subnet.network} overlaps {config.interface}'s network "
                f"{server_if.network}"
            )
        try:
            relayed.append(
                DhcpContext(
                    server_ip=server_if.ip,
                    network=subnet.network,
                    pool_start=subnet.first,
                    pool_end=subnet.last,
                    router=subnet.router,
                    lease_time=subnet.lease_time or config.lease_time,
                    relayed=True,
                    **(vars(common) | ({"dns": subnet.dns} if subnet.dns is not None else {})),
                )
            )
        except ConfigError as exc:
            raise ConfigError(f"key 'subnets': {subnet.network}: {exc}") from None
    return relayed


def split_interfaces(
    relayed: list[DhcpContext], addresses: Mapping[str, IPv4Interface]
) -> tuple[list[DhcpContext], list[tuple[str, DhcpContext]]]:
    """Subnets behind relays, and the subnets of `dhcp_interfaces` (served on those interfaces,
    with the interface's own address as server id); each such interface needs its subnet."""
    more: list[tuple[str, DhcpContext]] = []
    for name, address in addresses.items():
        match = [c for c in relayed if c.network == address.network]
        if not match:
            raise ConfigError(
                f"key 'dhcp_interfaces': {name} is on {address.network}, which has no entry in "
                f"'subnets' (add one with its range)"
            )
        relayed.remove(match[0])
        more.append((name, replace(match[0], server_ip=address.ip, relayed=False)))
    return relayed, more


async def start_from_config(
    config: Config,
    server_if: IPv4Interface,
    http_port: int,
    hosts: HostLookup,
    store: StateStore,
    timeline: Timeline | None = None,
    decided: DhcpHandout | None = None,
    observer: Observer | None = None,
) -> DhcpService:
    """The DHCP sockets (leases kept in `store` in full mode); ConfigError names the key."""
    if config.interface is None:
        raise ConfigError("key 'interface' is not set: DHCP has no interface to answer on")
    given: DhcpHandout = (
        decided if decided is not None else await asyncio.to_thread(handout, config)
    )
    local, relayed = contexts(config, server_if, http_port, given)
    if local.mode is DhcpMode.FULL:
        log.info("DHCP clients get DNS servers: %s", _dns_line(given))
    addresses = {}
    for name in config.dhcp_interfaces:
        try:
            addresses[name] = interface_ipv4(name)
        except ConfigError as exc:
            raise ConfigError(f"key 'dhcp_interfaces': {exc}") from None
    relayed, more = split_interfaces(relayed, addresses)
    full = local.mode is DhcpMode.FULL
    shared = full and config.state_url is not None
    try:
        dhcp = await start_dhcp(
            local,
            hosts,
            config.interface,
            port=config.dhcp_port,
            relayed=relayed,
            store=store if full else None,
            timeline=timeline,
            more_interfaces=more,
            spread=instance_spread(store) if shared else 0.0,
            observer=observer,
        )
    except OSError as exc:
        raise ConfigError(
            f"key 'dhcp_port': cannot start DHCP on port {config.dhcp_port}: {exc.strerror or exc}"
        ) from None
    except StoreError as exc:
        raise ConfigError(f"key 'state_url' or 'state_dir': cannot load leases: {exc}") from None
    parts: list[Closable] = [dhcp]
    if shared:
        parts.append(LeaseFollower(store, "lease", dhcp.learn, store.load_leases))
    if full and config.router_advertisements and config.ipv6_prefix is None:
        from pxelab.dhcp.ra import start_ra  # with a prefix, app/dhcp6.py starts it

        try:
            parts.append(await start_ra(config.interface))
        except OSError as exc:
            log.warning("router advertisements off: %s", exc)
    await asyncio.sleep(0)
    return DhcpService(parts, [dhcp.core])


def fleet_observer(fleet: Fleet) -> Observer:
    """Tells the fleet what each request shows (profiles match on it; unservable MACs are kept)."""

    def observe(request: DhcpPacket, sender: Sender, now: float) -> None:
        arch, firmware, address = client_traits(request, sender.address)
        fleet.observe(request.mac, arch, firmware, address, now)

    return observe


def _dns_line(decided: DhcpHandout) -> str:
    servers = ", ".join(map(str, decided.dns))
    return f"{servers} ({decided.dns_source})" if servers else decided.dns_source


def instance_spread(store: StateStore) -> float:
    """Where in each pool this instance starts looking for free addresses (0 to 1), from its
    name: instances sharing one database offer different addresses first."""
    name = store.instance
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4]) / 2**32


class LeaseFollower(Generic[L]):
    """Keeps this instance's lease tables (DHCP or DHCPv6) in step with leases other instances
    grant and free: each such change arrives by NOTIFY with the lease it wrote (a Change of
    `kind` carrying an `L`, a FREE too), which `learn` takes in by the store's own rules
    (`pxelab.dhcp.leases.learns`); a notification without one makes it `load` the leases back,
    at most every `pause` seconds (that read adds leases; a row freed meanwhile stays in the
    table until it expires). Without it the database still refuses a second client on an
    address; with it such a refusal is rare, and an address released through another instance
    is offered here again at once."""

    def __init__(
        self,
        store: StateStore,
        kind: str,
        learn: Callable[[Sequence[L]], int],
        load: Callable[[], Awaitable[Sequence[L]]],
        pause: float = 0.2,
    ) -> None:
        self.kind, self.learn, self.load = kind, learn, load
        self.pause = pause
        self._due = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{kind}-follower")
        self._unsubscribe = store.subscribe(self._changed)

    def _changed(self, change: Change) -> None:
        if change.kind != self.kind or not change.remote:
            return  # this instance's own leases are in its tables already
        if change.lease is not None:  # a "lease" change carries a Lease, "lease6" a Lease6
            self.learn([cast(L, change.lease)])  # the notification carries the lease: no read
        else:
            self._due.set()  # read the table back

    async def _run(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            try:
                news = self.learn(await self.load())
            except StoreError as exc:
                log.warning("cannot read the shared %ss now: %s", self.kind, exc)
            else:
                if news:
                    log.debug("learned %d %ss from other instances", news, self.kind)
            await asyncio.sleep(self.pause)

    def close(self) -> None:
        self._unsubscribe()
        self._task.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

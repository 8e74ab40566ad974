"""`pxelab serve`: DHCP, TFTP and HTTP in one asyncio process, stopped cleanly by SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import signal
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import TYPE_CHECKING, Protocol, TypeVar

from aiohttp import web

from pxelab.app import control
from pxelab.app.config import Config
from pxelab.boot.explain import DhcpHandout
from pxelab.boot.grub import GrubFiles
from pxelab.boot.images import ImageIndex
from pxelab.boot.loaders import LoaderWatch
from pxelab.boot.render import Renderer
from pxelab.errors import ConfigError
from pxelab.events import Timeline
from pxelab.hosts.fleet import Fleet
from pxelab.hosts.install import InstallStore
from pxelab.http.app import AccessLogger, make_app
from pxelab.http.metrics import METRICS, Metrics
from pxelab.state import SeenRecord, StateStore, StoreError
from pxelab.state.writer import EventWriter

if TYPE_CHECKING:
    from pxelab.app.dhcp import DhcpService
    from pxelab.syslog.server import SyslogServer
    from pxelab.tftp.server import TftpServer

log = logging.getLogger("pxelab")

INVENTORY_POLL = 0.5
"""Seconds between scans of the hosts dir (in a worker thread), so changes apply soon after they
happen and no request waits on the disk."""


class Service(Protocol):
    """What the daemon needs of a started UDP service."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


def interface_address(config: Config) -> IPv4Interface:
    """This server's address and prefix on config.interface (the interface's own, or `address`)."""
    from pxelab.dhcp.interface import interface_ipv4

    if config.interface is None:
        raise ConfigError("key 'interface' is not set: no interface to read this server's address")
    try:
        found = interface_ipv4(config.interface)
    except (OSError, ValueError, ConfigError) as exc:
        raise ConfigError(f"key 'interface': {exc}") from None
    if config.address is None:
        return found
    if config.address not in found.network:
        raise ConfigError(
            f"key 'address': {config.address} is not in {config.interface}'s network {found.network}"
        )
    return IPv4Interface(f"{config.address}/{found.network.prefixlen}")


def raise_open_files_limit(want: int = 65536) -> None:
    """Lift the soft limit on open files toward the hard one: each HTTP client holds a socket,
    and a lab of slow or idle clients must not starve the others (the default soft limit is 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


T = TypeVar("T")


async def _bind(what: str, key: str, start: Awaitable[T]) -> T:
    try:
        return await start
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"key {key!r}: cannot start {what}: {why}") from None


@dataclass(frozen=True)
class Parts:
    """What the services share: the state store, inventory, renderer, install states, timeline."""

    store: StateStore
    """Leases, install states, boot events, tokens and the audit trail (SQLite or PostgreSQL)."""
    inventory: Fleet
    """The hosts (host files, profiles, boot API answers), reloaded from their dirs."""
    renderer: Renderer
    """Boot scripts, install data and GRUB configs."""
    installs: InstallStore
    """Install states (in the store), shared with `pxelab hosts` and other instances."""
    timeline: Timeline
    """Boot events for /metrics, the status page and the API; kept in the store too."""
    events: EventWriter
    """Writes the timeline's events to the store."""
    loaders: LoaderWatch
    """The loaders in the TFTP root, rescanned with the hosts: DHCP's boot files follow them."""


RESTORED_EVENTS = 20_000
"""Events read back from the store at start, so the timeline shows what came before a restart."""


async def prepare(config: Config) -> Parts:
    """Lift the open-files limit, check the directories of the services that are on (made when
    missing) and the templates, open the state store (ConfigError with one line naming the key
    when any of it fails) and load what the services share."""
    from pxelab.app.startup import check_all

    raise_open_files_limit()
    images = ImageIndex(config.images_dir)
    renderer = Renderer(config.templates_dir, images)
    await asyncio.to_thread(check_all, config, renderer)
    store = await control.open_state(config)
    timeline = Timeline()
    try:
        timeline.restore(await store.recent_events(RESTORED_EVENTS))
    except StoreError as exc:
        await store.close()
        raise ConfigError(f"key {control.store_key(config)!r}: {exc}") from None
    events = EventWriter(store)
    timeline.subscribe(events)
    inventory = await asyncio.to_thread(make_fleet, config, images)
    return Parts(
        store,
        inventory,
        renderer,
        InstallStore(store),
        timeline,
        events,
        LoaderWatch(config.tftp_root),
    )


HTTP_MAX_HEADERS = 128
"""Header lines per HTTP request at most; more get 400 (tests/integration/test_http_load.py)."""
HTTP_MAX_LINE = 8190
"""Bytes in the request line or one header at most; longer gets 400 or 431."""


def make_fleet(config: Config, images: ImageIndex) -> Fleet:
    """The hosts: host files, profiles, and the boot API when one is set (not yet started);
    blocking (reads the hosts and profiles dirs)."""
    from pxelab.hosts.bootapi import BootApi

    fleet = Fleet(
        config.hosts_dir, config.profiles_dir, rescan_on_lookup=False, on_change=images.refresh
    )
    if config.boot_api is not None:
        fleet.boot_api = BootApi(
            config.boot_api, fleet.resolve, mode=config.boot_api_mode, ttl=config.boot_api_ttl
        )
    return fleet


def http_runner(config: Config, parts: Parts, handout: DhcpHandout) -> web.AppRunner:
    """The HTTP app's runner (not yet listening)."""
    app = make_app(
        parts.inventory,
        parts.renderer,
        config.images_dir,
        parts.timeline,
        install_store=parts.installs,
        tftp_root=config.tftp_root,
        guard=control.make_guard(config, parts.store),
        store=parts.store,
        handout=handout,
        loaders=parts.loaders,
    )
    return web.AppRunner(
        app,
        access_log_class=AccessLogger,
        access_log=logging.getLogger("pxelab.http"),
        handle_signals=False,
        max_headers=HTTP_MAX_HEADERS,
        max_line_size=HTTP_MAX_LINE,
        max_field_size=HTTP_MAX_LINE,
    )


HTTP_BACKLOG = 1024
"""Connections waiting to be accepted (aiohttp's default, 128, makes a rack powering on at once
wait for SYN retransmissions); the kernel caps it at net.core.somaxconn."""


async def start_http(config: Config, runner: web.AppRunner, tls: ssl.SSLContext | None) -> str:
    """Listen on http_address:http_port, and on https_port with tls; says where (for the ready
    line), with the port picked for port 0."""
    site = web.TCPSite(
        runner, config.http_address, config.http_port, reuse_address=True, backlog=HTTP_BACKLOG
    )
    await _bind(f"HTTP on {config.http_address}:{config.http_port}", "http_port", site.start())
    where = f"http on {config.http_address}:{runner.addresses[0][1]}"
    if tls is not None:
        secure = web.TCPSite(
            runner,
            config.http_address,
            config.https_port,
            ssl_context=tls,
            reuse_address=True,
            backlog=HTTP_BACKLOG,
        )
        what = f"HTTPS on {config.http_address}:{config.https_port}"
        await _bind(what, "https_port", secure.start())
        where += f", https on {config.http_address}:{runner.addresses[1][1]}"
    if config.ipv6_prefix is not None and config.http_address == "0.0.0.0":
        port = runner.addresses[0][1]  # the same port as IPv4's (even when it was picked)
        site6 = web.TCPSite(runner, "::", port, reuse_address=True)
        await _bind(f"HTTP on [::]:{port}", "http_port", site6.start())
        where += f", http on [::]:{port}"
    return where


def _dhcp_summary(config: Config, server_if: IPv4Interface | None) -> str:
    """What the ready line says about DHCP (and DHCPv6)."""
    v4 = f"on {config.interface} ({server_if})" if server_if else "off"
    if config.interface and config.ipv6_prefix is not None:
        return f"{v4}, dhcpv6 on {config.interface} ({config.ipv6_prefix})"
    return v4 if server_if or config.interface else "off (no --interface)"


def _serves_ipv4(config: Config) -> bool:
    """Whether `--interface` gets IPv4 DHCP: not when only `ipv6_prefix` is set (IPv6 only)."""
    if not config.interface:
        return False
    return config.ipv6_prefix is None or config.dhcp_range is not None or config.address is not None


async def start_tftp(
    config: Config, parts: Parts, server_if: IPv4Interface | None, host: str | None = None
) -> TftpServer:
    """The TFTP server on tftp_port, with GRUB's generated files (call only when tftp_port != 0);
    `host` "::" is the IPv6 listener beside the IPv4 one."""
    from pxelab.tftp.server import start_tftp as start
    from pxelab.tftp.session import SessionConfig

    if host is None:
        host = str(config.tftp_address or (server_if.ip if server_if else "0.0.0.0"))
    return await _bind(
        f"TFTP on port {config.tftp_port}",
        "tftp_port",
        start(
            config.tftp_root,
            host,
            config.tftp_port,
            interface=config.interface,
            config=SessionConfig(max_windowsize=config.tftp_windowsize_max),
            max_sessions=config.tftp_max_sessions,
            max_per_client=config.tftp_max_per_client,
            max_queued=config.tftp_max_queued,
            timeline=parts.timeline,
            virtual=GrubFiles(parts.inventory, parts.renderer, config.images_dir, parts.installs),
        ),
    )


async def start_syslog(
    config: Config, parts: Parts, server_if: IPv4Interface | None, metrics: Metrics
) -> SyslogServer | None:
    """The syslog receiver on syslog_port (None when it is 0, or when the port cannot be bound:
    then one warning line says so and the rest serves on)."""
    from pxelab.syslog.server import start_syslog as start

    if not config.syslog_port:
        return None
    host = str(server_if.ip) if server_if is not None else config.http_address

    def dropped(reason: str) -> None:
        metrics.syslog_dropped.labels(reason).inc()

    return await start(
        host, config.syslog_port, parts.timeline, parts.inventory.reserved, on_drop=dropped
    )


def rescan(inventory: Fleet, images: ImageIndex, loaders: LoaderWatch | None = None) -> bool:
    """Re-read the hosts dir, look the hosts' image files up again and the TFTP root's loaders
    (blocking: a worker thread); True when the loaders changed. New hosts' images are looked up
    before the hosts are published (`on_change`)."""
    if not inventory.refresh():
        images.refresh(inventory.hosts())
    return loaders is not None and loaders.scan()


async def run_until(
    stop: asyncio.Event,
    inventory: Fleet,
    images: ImageIndex,
    store: StateStore | None = None,
    loaders: LoaderWatch | None = None,
) -> None:
    """Serve until stop is set, rescanning the hosts and profiles dirs, the hosts' image files
    and the TFTP root's loaders every INVENTORY_POLL seconds, in a worker thread (a change of
    loaders then reaches DHCP's boot files, here on the loop), and storing the MACs seen since
    that nothing could serve."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), INVENTORY_POLL)
        if await asyncio.to_thread(rescan, inventory, images, loaders) and loaders is not None:
            loaders.publish()
        if store is not None:
            await remember_seen(inventory, store)


async def remember_seen(fleet: Fleet, store: StateStore) -> None:
    """Write the unservable MACs seen since the last call to the store (a failure is logged)."""
    records = [
        SeenRecord(s.mac, s.arch or "", s.firmware or "", s.address, s.first, s.last)
        for s in fleet.sightings.take_unservable()
    ]
    try:
        await store.note_seen(records)
    except StoreError as exc:
        log.warning("cannot remember %d machines seen: %s", len(records), exc)


async def close_all(services: list[Service], runner: web.AppRunner, parts: Parts) -> None:
    """Close the UDP services (last started first), wait for them, stop HTTP, then save the
    last events and close the store."""
    for service in reversed(services):
        service.close()
    for service in services:
        await service.wait_closed()
    await runner.cleanup()
    if parts.inventory.boot_api is not None:
        await parts.inventory.boot_api.close()
    await parts.events.close()
    await parts.store.close()


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM; raise ConfigError (before serving) for a bad setting."""
    try:
        tls = control.tls_context(config)  # a bad certificate or key stops us first, in one line
        parts = await prepare(config)
    except OSError as exc:  # what no check above foresaw: still one line, not a traceback
        raise ConfigError(f"cannot start: {exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    services: list[Service] = []
    try:
        runner = await _start(config, parts, tls, services)
    except OSError as exc:
        raise ConfigError(f"cannot start: {exc}") from None
    try:
        await run_until(stop, parts.inventory, parts.renderer.images, parts.store, parts.loaders)
        log.info("pxelab stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await close_all(services, runner, parts)


async def _start(
    config: Config, parts: Parts, tls: ssl.SSLContext | None, services: list[Service]
) -> web.AppRunner:
    """Start HTTP, TFTP and DHCP (appending them to services), drop root, log the ready line;
    on any failure stop what started and raise."""
    decided = await asyncio.to_thread(first_handout, config, parts.loaders)
    runner = http_runner(config, parts, decided)
    await runner.setup()
    try:
        parts.events.start()
        if parts.inventory.boot_api is not None:
            parts.inventory.boot_api.start()
        http = await start_http(config, runner, tls)
        http_port: int = runner.addresses[0][1]
        server_if = interface_address(config) if _serves_ipv4(config) else None
        tftp_port = None
        if config.tftp_port:
            tftp = await start_tftp(config, parts, server_if)
            services.append(tftp)
            tftp_port = tftp.port
            if config.ipv6_prefix is not None:
                services.append(await start_tftp(config, parts, server_if, host="::"))
        syslog = await start_syslog(config, parts, server_if, runner.app[METRICS])
        if syslog is None:
            config = dataclasses.replace(config, syslog_port=0)
        else:
            services.append(syslog)
        parts.renderer.syslog_port = config.syslog_port
        if server_if is not None:
            v4 = await _start_dhcp(config, server_if, http_port, parts, decided)
            services.append(v4)
            parts.loaders.subscribe(v4.use_boot_files)
        if config.interface and config.ipv6_prefix is not None:
            from pxelab.app.dhcp6 import start_ipv6

            v6 = await start_ipv6(
                config,
                http_port,
                parts.inventory,
                parts.store,
                parts.timeline,
                boot_files=decided.boot_files,
            )
            services.append(v6)
            parts.loaders.subscribe(v6.use_boot_files)
        if config.user:
            await drop_privileges(config)
    except BaseException:
        await close_all(services, runner, parts)
        raise
    log.info(
        "pxelab ready: %s, tftp %s, dhcp %s, syslog %s; hosts from %s; state in %s",
        http,
        f"on port {tftp_port} from {config.tftp_root}" if tftp_port else "off",
        _dhcp_summary(config, server_if),
        f"on port {syslog.port}" if syslog else "off",
        config.hosts_dir,
        control.store_place(config),
    )
    return runner


def first_handout(config: Config, loaders: LoaderWatch) -> DhcpHandout:
    """What DHCP hands out at start, with the loaders' first scan (blocking: a worker thread)."""
    from pxelab.app.dhcp import handout

    loaders.scan()
    return handout(config, loaders.boot_files)


async def drop_privileges(config: Config) -> None:
    """Become config.user now that every privileged socket is bound.

    What is imported or started lazily is done first: after the switch the interpreter's own
    files may be unreadable (a Python under /root, say).
    """
    import concurrent.futures.thread  # noqa: F401  (asyncio.to_thread imports it lazily)

    from pxelab.app import privileges

    if config.user is None:
        raise ConfigError("key 'user' is not set: no user to drop privileges to")
    await asyncio.get_running_loop().run_in_executor(None, lambda: None)
    account = privileges.lookup(config.user)
    if os.geteuid() == 0 and config.state_url is None:  # the embedded store writes there
        privileges.give_state_dir(account, config.state_dir)
    privileges.drop_to(account)
    log.info("running as user %s (uid %d, gid %d)", account.name, account.uid, account.gid)


async def _start_dhcp(
    config: Config, server_if: IPv4Interface, http_port: int, parts: Parts, decided: DhcpHandout
) -> DhcpService:
    from pxelab.app.dhcp import fleet_observer, start_from_config

    return await start_from_config(
        config,
        server_if,
        http_port,
        parts.inventory,
        parts.store,
        parts.timeline,
        decided,
        observer=fleet_observer(parts.inventory),
    )

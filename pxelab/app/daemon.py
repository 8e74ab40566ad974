"""`pxelab serve`: DHCP, TFTP and HTTP in one asyncio process, stopped cleanly by SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
from collections.abc import Awaitable
from ipaddress import IPv4Interface
from typing import Protocol, TypeVar

from aiohttp import web

from pxelab.app import control
from pxelab.app.config import Config
from pxelab.boot.grub import GrubFiles
from pxelab.boot.render import Renderer
from pxelab.errors import ConfigError
from pxelab.events import Timeline
from pxelab.hosts.install import install_store
from pxelab.hosts.inventory import Inventory
from pxelab.http.app import AccessLogger, make_app

log = logging.getLogger("pxelab")

INVENTORY_POLL = 2.0
"""Seconds between scans of the hosts dir, so changes are logged soon after they happen."""


class Service(Protocol):
    """What the daemon needs of a started UDP service."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


def interface_address(config: Config) -> IPv4Interface:
    """This server's address and prefix on config.interface (the interface's own, or `address`)."""
    from pxelab.dhcp.interface import interface_ipv4

    assert config.interface is not None
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
        raise ConfigError(f"key {key!r}: cannot start {what}: {exc.strerror or exc}") from None


async def serve(config: Config) -> None:
    """Run until SIGINT or SIGTERM; raise ConfigError (before serving) for a bad setting."""
    tls = control.tls_context(config)  # a bad certificate or key stops us first, in one line
    raise_open_files_limit()
    for directory in (config.hosts_dir, config.images_dir, config.tftp_root, config.state_dir):
        directory.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    inventory = Inventory(config.hosts_dir)
    renderer = Renderer(config.templates_dir)
    installs = install_store(config.state_dir)
    timeline = Timeline()
    services: list[Service] = []
    store = await control.open_state(config)  # tokens, audit trail, callback secret
    runner = web.AppRunner(
        make_app(
            inventory,
            renderer,
            config.images_dir,
            timeline,
            install_store=installs,
            tftp_root=config.tftp_root,
            guard=control.make_guard(config, store),
        ),
        access_log_class=AccessLogger,
        access_log=logging.getLogger("pxelab.http"),
        handle_signals=False,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.http_address, config.http_port, reuse_address=True)
        await _bind(f"HTTP on {config.http_address}:{config.http_port}", "http_port", site.start())
        http_port: int = runner.addresses[0][1]
        https = ""
        if tls is not None:
            where = f"HTTPS on {config.http_address}:{config.https_port}"
            secure = web.TCPSite(
                runner, config.http_address, config.https_port, ssl_context=tls, reuse_address=True
            )
            await _bind(where, "https_port", secure.start())
            https = f", https on {config.http_address}:{runner.addresses[1][1]}"

        server_if = interface_address(config) if config.interface else None
        tftp_port = None
        if config.tftp_port:
            from pxelab.tftp.server import start_tftp
            from pxelab.tftp.session import SessionConfig

            tftp_host = config.tftp_address or (server_if.ip if server_if else None)
            tftp = await _bind(
                f"TFTP on port {config.tftp_port}",
                "tftp_port",
                start_tftp(
                    config.tftp_root,
                    str(tftp_host or "0.0.0.0"),
                    config.tftp_port,
                    interface=config.interface,
                    config=SessionConfig(max_windowsize=config.tftp_windowsize_max),
                    max_sessions=config.tftp_max_sessions,
                    max_per_client=config.tftp_max_per_client,
                    timeline=timeline,
                    virtual=GrubFiles(inventory, renderer, config.images_dir, installs),
                ),
            )
            services.append(tftp)
            tftp_port = tftp.port

        if config.interface and server_if is not None:
            services.append(await _start_dhcp(config, server_if, http_port, inventory, timeline))

        if config.user:
            await drop_privileges(config)
        log.info(
            "pxelab ready: http on %s:%d%s, tftp %s, dhcp %s; hosts from %s",
            config.http_address,
            http_port,
            https,
            f"on port {tftp_port} from {config.tftp_root}" if tftp_port else "off",
            f"on {config.interface} ({server_if})" if server_if else "off (no --interface)",
            config.hosts_dir,
        )
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), INVENTORY_POLL)
            inventory.refresh()
        log.info("pxelab stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for service in reversed(services):
            service.close()
        for service in services:
            await service.wait_closed()
        await runner.cleanup()
        await store.close()


async def drop_privileges(config: Config) -> None:
    """Become config.user now that every privileged socket is bound.

    What is imported or started lazily is done first: after the switch the interpreter's own
    files may be unreadable (a Python under /root, say).
    """
    import concurrent.futures.thread  # noqa: F401  (asyncio.to_thread imports it lazily)

    from pxelab.app import privileges

    assert config.user is not None
    await asyncio.get_running_loop().run_in_executor(None, lambda: None)
    account = privileges.lookup(config.user)
    if os.geteuid() == 0:
        privileges.give_state_dir(account, config.state_dir)
    privileges.drop_to(account)
    log.info("running as user %s (uid %d, gid %d)", account.name, account.uid, account.gid)


async def _start_dhcp(
    config: Config,
    server_if: IPv4Interface,
    http_port: int,
    inventory: Inventory,
    timeline: Timeline | None = None,
) -> Service:
    from pxelab.app.dhcp import start_from_config

    return await start_from_config(config, server_if, http_port, inventory, timeline)

"""Build the IPv6 side of `--interface` from the settings: the RA with `ipv6_prefix` and the
DHCPv6 server. Every problem is a ConfigError naming the key.
"""

from __future__ import annotations

import logging

from pxelab.app.config import Config
from pxelab.app.dhcp import Closable, DhcpService, LeaseFollower, boot_files_in, instance_spread
from pxelab.dhcp.arch import BootFiles
from pxelab.dhcp.context import UnknownMacs
from pxelab.dhcp.interface import interface_mac
from pxelab.dhcp6.context import Dhcp6Context, Host6Lookup, default_pool
from pxelab.dhcp6.options import duid_ll
from pxelab.dhcp6.server import interface_ipv6, start_dhcp6
from pxelab.errors import ConfigError
from pxelab.events import Timeline
from pxelab.state import StateStore, StoreError

log = logging.getLogger("pxelab.dhcp6")


def context6(config: Config, http_port: int, boot_files: BootFiles | None = None) -> Dhcp6Context:
    """The DHCPv6 context of `interface` and `ipv6_prefix` (reads the interface's address), with
    these boot files, else those the TFTP root holds now."""
    if config.interface is None or config.ipv6_prefix is None:
        raise ConfigError("keys 'interface' and 'ipv6_prefix' are both needed for DHCPv6")
    prefix = config.ipv6_prefix
    server = interface_ipv6(config.interface, prefix)
    first, last = config.ipv6_range or default_pool(prefix)
    return Dhcp6Context(
        server_duid=duid_ll(interface_mac(config.interface)),
        server_ip=server.ip,
        prefix=prefix,
        pool_start=first,
        pool_end=last,
        dns=config.ipv6_dns,
        lease_time=config.lease_time,
        http_port=http_port,
        boot_files=boot_files if boot_files is not None else boot_files_in(config.tftp_root),
        unknown_macs=UnknownMacs(config.unknown_macs) if config.unknown_macs else UnknownMacs.SERVE,
    )


async def start_ipv6(
    config: Config,
    http_port: int,
    hosts: Host6Lookup,
    store: StateStore | None = None,
    timeline: Timeline | None = None,
    port: int = 547,
    boot_files: BootFiles | None = None,
) -> DhcpService:
    """The RA responder (with the prefix) and the DHCPv6 server on `interface` (handing out
    `boot_files`, else those the TFTP root holds now; `use_boot_files` changes them); with a
    shared store (`state_url`), the follower that learns the other instances' IPv6 leases."""
    ctx = context6(config, http_port, boot_files)
    interface = config.interface or ""
    parts: list[Closable] = []
    shared = store if config.state_url is not None else None  # other instances use it too
    spread = instance_spread(shared) if shared is not None else 0.0
    try:
        server = await start_dhcp6(
            ctx, hosts, interface, port=port, store=store, timeline=timeline, spread=spread
        )
    except OSError as exc:
        raise ConfigError(
            f"key 'ipv6_prefix': cannot start DHCPv6: {exc.strerror or exc}"
        ) from None
    except StoreError as exc:
        raise ConfigError(f"key 'state_url' or 'state_dir': cannot load leases: {exc}") from None
    parts.append(server)
    if shared is not None:
        parts.append(LeaseFollower(shared, "lease6", server.learn, shared.load_leases6))
    if config.router_advertisements:
        from pxelab.dhcp.ra import start_ra

        try:
            parts.append(await start_ra(interface, ctx.prefix, router=config.ipv6_router))
        except OSError as exc:
            log.warning("router advertisements off: %s", exc)
    return DhcpService(parts, [server.core])

"""`pxelab hosts add|list|show|rm|reinstall` and `pxelab explain <mac>`: the inventory by hand.

Host files are validated with the daemon's own parser before they are written (atomically);
install states go to the same store the running daemon reads, so changes apply at the next boot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from pxelab.app.config import Config
from pxelab.boot.explain import CLIENTS, as_text, explain
from pxelab.boot.images import ImageIndex
from pxelab.boot.render import Renderer
from pxelab.cli.settings import add_settings_flags, settings_from_args, with_store
from pxelab.errors import ConfigError, HostFileError
from pxelab.files import write_atomic
from pxelab.hosts.fleet import Fleet
from pxelab.hosts.install import HostState, InstallState, InstallStore
from pxelab.hosts.inventory import TEMPLATES, Host, Inventory, normalize_mac, parse_host
from pxelab.state import AuditRecord, StateStore

EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2
SETTINGS = ("hosts_dir", "profiles_dir", "state_dir", "state_url")
EXPLAIN_SETTINGS = (
    *SETTINGS,
    "templates_dir",
    "tftp_root",
    "images_dir",
    "dns",
    "resolv_conf",
    "dhcp_mode",
    "address",
    "interface",
    "http_address",
    "http_port",
)


def _fail(message: str, code: int) -> int:
    print(f"pxelab: error: {message}", file=sys.stderr)
    return code


def find(inventory: Inventory, key: str) -> Host | None:
    """A host by name or by MAC (any spelling)."""
    return inventory.by_name(key) or inventory.lookup(key)


def _named_host(args: argparse.Namespace) -> tuple[Config, Host | None]:
    """The settings, and the host `args.host` names (by name or MAC), if there is one."""
    config = settings_from_args(args)
    return config, find(fleet_of(config), args.host)


def fleet_of(config: Config) -> Fleet:
    """The host files and profiles the daemon with these settings serves."""
    return Fleet(config.hosts_dir, config.profiles_dir)


def write_host_file(path: Path, data: dict[str, Any]) -> None:
    """Write a host file atomically (temporary file, fsync, rename)."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def cmd_add(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    data: dict[str, Any] = {"name": args.name, "mac": args.mac, "arch": args.arch}
    for key in ("ip", "distro", "template", "kernel", "initrd", "kernel_args", "iso", "repo"):
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    if args.ssh_key:
        data["ssh_keys"] = args.ssh_key
    if args.no_pxeboot:
        data["pxeboot"] = False
    path = config.hosts_dir / f"{args.name}.json"
    try:
        host = parse_host(data, str(path))
    except HostFileError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    inventory = fleet_of(config)
    for other in inventory.hosts():
        if other.source != str(path) and (
            other.mac == host.mac or (host.ip and other.ip == host.ip)
        ):
            return _fail(f"{other.source} already has mac {other.mac} or ip {other.ip}", 1)
    if path.exists() and not args.force:
        return _fail(f"{path} exists (use --force to replace it)", 1)
    write_host_file(path, data)
    print(f"added {host.name} ({host.mac}, {host.arch}, template {host.template}): {path}")
    return 0


def install_states(config: Config, macs: list[str]) -> dict[str, HostState]:
    """The install states of these MACs, from the state store the daemon uses."""

    async def read(store: StateStore) -> dict[str, HostState]:
        return {mac: InstallStore(store).get(mac) for mac in macs}

    return with_store(config, read)


def cmd_list(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    inventory = fleet_of(config)
    states = install_states(config, [h.mac for h in inventory.hosts()])
    rows = [
        (
            h.name,
            h.mac,
            h.arch,
            h.template,
            h.distro or "-",
            str(h.ip or "pool"),
            states[h.mac].state.value,
        )
        for h in inventory.hosts()
    ]
    if args.json:
        keys = ("name", "mac", "arch", "template", "distro", "ip", "state")
        print(json.dumps([dict(zip(keys, row, strict=True)) for row in rows], indent=2))
        return 0
    header = ("NAME", "MAC", "ARCH", "TEMPLATE", "DISTRO", "IP", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for source, error in inventory.errors.items():
        print(f"broken: {source}: {error}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config, host = _named_host(args)
    if host is None:
        return _fail(f"no host {args.host!r} in {config.hosts_dir}", EXIT_NOT_FOUND)
    data = json.loads(Path(host.source).read_text(encoding="utf-8"))
    state = install_states(config, [host.mac])[host.mac]
    print(
        json.dumps(
            {"file": host.source, "host": data, "template": host.template, **state.to_json()},
            indent=2,
        )
    )
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    config, host = _named_host(args)
    if host is None:
        return _fail(f"no host {args.host!r} in {config.hosts_dir}", EXIT_NOT_FOUND)
    Path(host.source).unlink()

    async def forget(store: StateStore) -> None:
        await InstallStore(store).forget(host.mac)

    with_store(config, forget)
    print(f"removed {host.name} ({host.mac}): {host.source}")
    return 0


def cmd_reinstall(args: argparse.Namespace) -> int:
    config, host = _named_host(args)
    if host is None:
        return _fail(f"no host {args.host!r} in {config.hosts_dir}", EXIT_NOT_FOUND)
    mac = host.mac

    async def reinstall(store: StateStore) -> None:
        await InstallStore(store).set(mac, InstallState.INSTALL, time.time(), "cli")
        await store.audit(AuditRecord(time.time(), "cli", "cli", "reinstall", mac, True, ""))

    with_store(config, reinstall)
    print(f"{host.name} ({host.mac}) will install again at its next network boot")
    return 0


def server_address(config: Config) -> IPv4Address:
    """Where DHCP would point clients: `address`, the interface's, `http_address`, or loopback."""
    if config.address is not None:
        return config.address
    if config.interface:
        from pxelab.app.daemon import interface_address

        return interface_address(config).ip
    if config.http_address not in ("0.0.0.0", ""):
        try:
            return IPv4Address(config.http_address)
        except ValueError:
            pass
    return IPv4Address("127.0.0.1")


def server_address6(config: Config) -> IPv6Address | None:
    """This server's IPv6 address when `ipv6_prefix` is set: the interface's in the prefix, else
    the prefix's ::1."""
    if config.ipv6_prefix is None:
        return None
    if config.interface:
        from pxelab.dhcp6.server import interface_ipv6

        try:
            return interface_ipv6(config.interface, config.ipv6_prefix).ip
        except ConfigError:
            pass
    return config.ipv6_prefix[1]


def cmd_explain(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    try:
        mac = normalize_mac(args.mac)
    except ValueError as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    fleet = fleet_of(config)
    if args.arch is not None:  # what DHCP would learn from such a client, for profile selectors
        client = CLIENTS[args.arch]
        firmware = {0: "bios", None: None}.get(client.option93, "uefi")
        if client.option93 in (16, 19):
            firmware = "uefi-http"
        arch = "aarch64" if "arm64" in client.name else "x86_64"
        fleet.sightings.saw(mac, arch, firmware, "", time.time())
    host = fleet.lookup(mac)
    if host is None:
        return _fail(
            f"no host with mac {mac} in {config.hosts_dir}, and no profile in "
            f"{config.profiles_dir} matches it"
            + ("" if args.arch else " (selectors on arch or firmware need --arch)"),
            EXIT_NOT_FOUND,
        )
    from pxelab.app.dhcp import handout  # what a daemon started now would hand out

    server = server_address(config)
    port = config.http_port or 8080
    result = explain(
        host,
        install_states(config, [mac])[mac],
        Renderer(config.templates_dir, ImageIndex(config.images_dir, live=True)),
        f"http://{server}:{port}",
        server,
        port,
        arch=args.arch,
        handout=handout(config),
        tftp_root=config.tftp_root,
        server_ip6=server_address6(config),
        origins=fleet.origins(host),
    )
    print(json.dumps(result, indent=2) if args.json else as_text(result), end="")
    return 0 if not result["errors"] else 1


def register(commands: Any) -> None:
    """Add `hosts` (with its subcommands) and `explain` to the pxelab command line."""
    hosts = commands.add_parser("hosts", help="add, list, show, remove or reinstall hosts")
    sub = hosts.add_subparsers(dest="hosts_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="write a validated host file")
    add.add_argument("name", help="host name (also the file name)")
    add.add_argument("--mac", required=True, help="boot NIC's MAC")
    add.add_argument("--arch", default="x86_64", help="x86_64 or aarch64 (default x86_64)")
    add.add_argument("--ip", help="reserved IPv4 address")
    add.add_argument("--distro", help="image directory under the images dir, e.g. ubuntu-24.04")
    add.add_argument("--template", choices=TEMPLATES, help="default: from the distro's name")
    add.add_argument("--kernel", help="kernel file name or URL (default vmlinuz)")
    add.add_argument("--initrd", help="initrd file name or URL (default initrd)")
    add.add_argument("--kernel-args", help="appended to the kernel command line")
    add.add_argument("--iso", help="Ubuntu: the live-server ISO (default live-server.iso)")
    add.add_argument("--repo", help="Fedora/RHEL: the inst.repo URL")
    add.add_argument("--ssh-key", action="append", help="public SSH key (repeatable)")
    add.add_argument("--no-pxeboot", action="store_true", help="address only, no boot file")
    add.add_argument("--force", action="store_true", help="replace an existing file")
    add_settings_flags(add, SETTINGS)
    add.set_defaults(func=cmd_add)

    listing = sub.add_parser("list", help="every host with its install state")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_settings_flags(listing, SETTINGS)
    listing.set_defaults(func=cmd_list)

    for name, func, text in (
        ("show", cmd_show, "print a host file and its install state"),
        ("rm", cmd_rm, "remove a host file and its install state"),
        ("reinstall", cmd_reinstall, "install the host again at its next network boot"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("host", help="host name or MAC")
        add_settings_flags(parser, SETTINGS)
        parser.set_defaults(func=func)

    from pxelab.cli import fleet

    fleet.register(sub)

    exp = commands.add_parser(
        "explain", help="what DHCP, TFTP and HTTP would serve a machine, and why"
    )
    exp.add_argument("mac", help="the machine's MAC")
    exp.add_argument("--arch", choices=list(CLIENTS), help="one client kind (default: all)")
    exp.add_argument("--json", action="store_true", help="print JSON (as /api/explain/<mac>)")
    add_settings_flags(exp, EXPLAIN_SETTINGS)
    exp.set_defaults(func=cmd_explain)

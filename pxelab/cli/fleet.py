"""`pxelab hosts seen` and `pxelab hosts adopt`: machines that asked to boot and that nothing
serves yet, and turning one into a host file (optionally on a profile).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from pxelab.cli.settings import add_settings_flags, settings_from_args, with_store
from pxelab.errors import HostFileError
from pxelab.files import write_atomic
from pxelab.hosts.fleet import Fleet
from pxelab.hosts.inventory import normalize_mac
from pxelab.state import AuditRecord, SeenRecord, StateStore

SETTINGS = ("hosts_dir", "profiles_dir", "state_dir", "state_url")


def _fail(message: str, code: int) -> int:
    print(f"pxelab: error: {message}", file=sys.stderr)
    return code


def unserved(fleet: Fleet, records: list[SeenRecord]) -> list[SeenRecord]:
    """The records whose MAC no host file or profile covers now (adopted ones drop out)."""
    return [r for r in records if fleet.lookup(r.mac) is None]


def cmd_seen(args: argparse.Namespace) -> int:
    config = settings_from_args(args)

    async def read(store: StateStore) -> list[SeenRecord]:
        return await store.seen()

    records = unserved(Fleet(config.hosts_dir, config.profiles_dir), with_store(config, read))
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return 0
    header = ("MAC", "ARCH", "FIRMWARE", "ADDRESS", "FIRST SEEN", "LAST SEEN")
    stamp = "%Y-%m-%d %H:%M:%S"
    rows = [
        (
            r.mac,
            r.arch or "-",
            r.firmware or "-",
            r.address or "-",
            time.strftime(stamp, time.localtime(r.first)),
            time.strftime(stamp, time.localtime(r.last)),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_adopt(args: argparse.Namespace) -> int:
    config = settings_from_args(args)
    try:
        mac = normalize_mac(args.mac)
    except ValueError as exc:
        return _fail(str(exc), 2)
    fleet = Fleet(config.hosts_dir, config.profiles_dir)
    path = config.hosts_dir / f"{args.name}.json"
    for other in fleet.hosts():
        if other.mac == mac or other.name == args.name:
            return _fail(f"{other.source} already has mac {other.mac} or name {other.name}", 1)
    if path.exists():
        return _fail(f"{path} exists", 1)

    async def seen(store: StateStore) -> SeenRecord | None:
        return next((r for r in await store.seen() if r.mac == mac), None)

    record = with_store(config, seen)
    data: dict[str, Any] = {"name": args.name, "mac": mac}
    if args.profile:
        data["profile"] = args.profile
    profile = fleet.profile_set.get(args.profile) if args.profile else None
    if record is not None and record.arch and (profile is None or "arch" not in profile.keys):
        data["arch"] = record.arch  # what its DHCP request said, unless the profile says
    try:
        host, _ = fleet.resolve(data, str(path))
    except HostFileError as exc:
        return _fail(str(exc), 2)
    config.hosts_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2) + "\n")

    async def forget(store: StateStore) -> None:
        await store.forget_seen(mac)
        await store.audit(AuditRecord(time.time(), "cli", "cli", "adopt", mac, True, str(path)))

    with_store(config, forget)
    via = f", profile {args.profile}" if args.profile else ""
    print(f"adopted {host.name} ({host.mac}, {host.arch}{via}): {path}")
    return 0


def register(sub: Any) -> None:
    """Add `seen` and `adopt` to the `pxelab hosts` subcommands."""
    seen = sub.add_parser("seen", help="machines that asked to boot and that nothing serves")
    seen.add_argument("--json", action="store_true", help="print JSON")
    add_settings_flags(seen, SETTINGS)
    seen.set_defaults(func=cmd_seen)
    adopt = sub.add_parser("adopt", help="write a host file for a machine seen")
    adopt.add_argument("mac", help="the machine's MAC")
    adopt.add_argument("--name", required=True, help="host name (also the file name)")
    adopt.add_argument("--profile", help="the profile it inherits from")
    add_settings_flags(adopt, SETTINGS)
    adopt.set_defaults(func=cmd_adopt)

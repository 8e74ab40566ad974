"""`pxelab leases`: the active DHCP leases in the state store, from every instance that shares it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from pxelab.cli.settings import add_settings_flags, settings_from_args, with_store
from pxelab.dhcp.leases import Lease
from pxelab.http.api import lease_json
from pxelab.state import StateStore, StoreError

SETTINGS = ("state_dir", "state_url")


def cmd_leases(args: argparse.Namespace) -> int:
    config = settings_from_args(args)

    async def read(store: StateStore) -> list[tuple[Lease, str]]:
        return await store.active_leases(time.time())

    try:
        held = with_store(config, read)
    except StoreError as exc:
        print(f"pxelab: error: {exc}", file=sys.stderr)
        return 1
    held.sort(key=lambda row: row[0].ip)
    if args.json:
        print(json.dumps([lease_json(lease, by) for lease, by in held], indent=2))
        return 0
    rows = [("IP", "MAC", "STATE", "EXPIRES", "INSTANCE")]
    for lease, by in held:
        expires = datetime.fromtimestamp(lease.expires, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        rows.append((str(lease.ip), lease.mac, lease.state.value, expires, by or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def register(commands: Any) -> None:
    """Add `leases` to the pxelab command line."""
    parser = commands.add_parser("leases", help="the active DHCP leases (every instance's)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_settings_flags(parser, SETTINGS)
    parser.set_defaults(func=cmd_leases)

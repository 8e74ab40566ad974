"""`pxelab leases`: the active DHCP and DHCPv6 leases in the state store, from every instance that
shares it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pxelab.cli.settings import add_settings_flags, settings_from_args, with_store
from pxelab.dhcp.leases import Lease
from pxelab.dhcp6.leases import Lease6
from pxelab.http.api import leases_json
from pxelab.state import StateStore, StoreError

SETTINGS = ("state_dir", "state_url")
Held = tuple[list[tuple[Lease, str]], list[tuple[Lease6, str]]]


def cmd_leases(args: argparse.Namespace) -> int:
    config = settings_from_args(args)

    async def read(store: StateStore) -> Held:
        now = time.time()
        return await store.active_leases(now), await store.active_leases6(now)

    try:
        held, held6 = with_store(config, read)
    except StoreError as exc:
        print(f"pxelab: error: {exc}", file=sys.stderr)
        return 1
    held.sort(key=lambda row: row[0].ip)
    if args.json:
        print(json.dumps(leases_json(held, held6), indent=2))
        return 0
    rows = [("IP", "MAC", "STATE", "EXPIRES", "INSTANCE")]
    for lease, by in held:
        rows.append((str(lease.ip), lease.mac, lease.state.value, _when(lease.expires), by or "-"))
    _print(rows)
    if held6:  # the DHCPv6 table only when there is one
        print()
        rows6 = [("IPV6", "MAC/DUID", "IAID", "STATE", "EXPIRES", "INSTANCE")]
        for v6, by in held6:
            state, expires = v6.state.value, _when(v6.expires)
            rows6.append((str(v6.ip), v6.client, str(v6.iaid), state, expires, by or "-"))
        _print(rows6)
    return 0


def _when(expires: float) -> str:
    return datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print(rows: Sequence[tuple[str, ...]]) -> None:
    """Rows as columns, each as wide as its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def register(commands: Any) -> None:
    """Add `leases` to the pxelab command line."""
    parser = commands.add_parser(
        "leases", help="the active DHCP and DHCPv6 leases (every instance's)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON, as GET /api/leases")
    add_settings_flags(parser, SETTINGS)
    parser.set_defaults(func=cmd_leases)

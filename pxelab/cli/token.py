"""`pxelab token create|list|revoke` and `pxelab audit`: API tokens and the audit trail.

They open the same state store as `pxelab serve` (`--state-dir`, `--state-url`), so they work
while the daemon runs: a token created here is accepted by the next request.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

from pxelab.cli.settings import add_settings_flags, settings_from_args, with_store
from pxelab.http import auth
from pxelab.state import AuditRecord, StateStore, StoreError, TokenRecord

SETTINGS = ("state_dir", "state_url")
EXIT_FAILED = 1
T = TypeVar("T")


def _fail(message: str) -> int:
    print(f"pxelab: error: {message}", file=sys.stderr)
    return EXIT_FAILED


async def _audit(store: StateStore, action: str, target: str, allowed: bool, reason: str) -> None:
    await store.audit(AuditRecord(time.time(), "cli", "cli", action, target, allowed, reason))


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_create(args: argparse.Namespace) -> int:
    try:
        name = auth.check_token_name(args.name)
    except ValueError as exc:
        return _fail(str(exc))
    token = auth.new_token()

    async def create(store: StateStore) -> None:
        await store.add_token(TokenRecord(name, auth.token_digest(token), time.time()))
        await _audit(store, "token-create", name, True, "")

    try:
        with_store(settings_from_args(args), create)
    except StoreError as exc:
        return _fail(str(exc))
    print(token)
    print(f"token {name!r} created; it is shown once, keep it now", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    async def listing(store: StateStore) -> list[TokenRecord]:
        return await store.tokens()

    try:
        tokens = with_store(settings_from_args(args), listing)
    except StoreError as exc:
        return _fail(str(exc))
    if args.json:
        rows = [{"name": t.name, "created": t.created} for t in tokens]
        print(json.dumps(rows, indent=2))
        return 0
    for token in tokens:
        print(f"{token.name:24} created {_when(token.created)}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    async def revoke(store: StateStore) -> bool:
        done = await store.revoke_token(args.name)
        await _audit(store, "token-revoke", args.name, done, "" if done else "no such token")
        return done

    try:
        done = with_store(settings_from_args(args), revoke)
    except StoreError as exc:
        return _fail(str(exc))
    if not done:
        return _fail(f"no token named {args.name!r}")
    print(f"token {args.name!r} revoked", file=sys.stderr)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    async def records(store: StateStore) -> list[AuditRecord]:
        return await store.audit_records(args.limit)

    try:
        found = with_store(settings_from_args(args), records)
    except StoreError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps([asdict(r) for r in found], indent=2))
        return 0
    for r in found:
        verdict = "allowed" if r.allowed else "REFUSED"
        line = f"{_when(r.time)} {verdict:7} {r.action} {r.target or '-'} by {r.who or '(nobody)'}"
        print(f"{line} from {r.client or '?'}{f': {r.reason}' if r.reason else ''}")
    return 0


def register(commands: Any) -> None:
    """Add `token` (create, list, revoke) and `audit` to the pxelab command line."""
    token = commands.add_parser("token", help="create, list or revoke API tokens")
    sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="make a token and print it (once)")
    create.add_argument("name", help="the token's name: letters, digits, '.', '_', '-'")
    add_settings_flags(create, SETTINGS)
    create.set_defaults(func=cmd_create)
    listing = sub.add_parser("list", help="the tokens' names and when they were made")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_settings_flags(listing, SETTINGS)
    listing.set_defaults(func=cmd_list)
    revoke = sub.add_parser("revoke", help="revoke a token: it is refused from now on")
    revoke.add_argument("name", help="the token's name")
    add_settings_flags(revoke, SETTINGS)
    revoke.set_defaults(func=cmd_revoke)

    audit = commands.add_parser("audit", help="the audit trail: every control action, refused too")
    audit.add_argument("--limit", type=int, default=100, help="the newest N records (default 100)")
    audit.add_argument("--json", action="store_true", help="print JSON")
    add_settings_flags(audit, SETTINGS)
    audit.set_defaults(func=cmd_audit)

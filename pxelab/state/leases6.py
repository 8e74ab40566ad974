"""DHCPv6 leases in the state store: the `leases6` table (schema version 2) and its reads and
writes for both backends, called by SqliteStore (worker thread) and PostgresStore (a connection).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Protocol

from pxelab.dhcp.leases import LeaseState
from pxelab.dhcp6.leases import Lease6
from pxelab.state import StoreError

__all__ = ["PG_LEASES6", "SQLITE_LEASES6", "Lease6", "pg_commit6", "pg_load6"]
__all__ += ["sqlite_commit6", "sqlite_load6"]


class SqliteLike(Protocol):
    """What the SQLite functions use of the SqliteStore."""

    @property
    def db(self) -> sqlite3.Connection: ...

    instance: str
    path: Path


SQLITE_LEASES6 = """CREATE TABLE leases6 (
    ip TEXT PRIMARY KEY, client TEXT NOT NULL, iaid INTEGER NOT NULL, state TEXT NOT NULL,
    expires REAL NOT NULL, instance TEXT NOT NULL DEFAULT '')"""
"""The SQLite table: one row per address (its compressed text form), like `leases`. A write
wins over the row of the same client (any IA: firmware and its network stack ask with different
IAIDs for one reserved address) or over an expired one."""
PG_LEASES6 = """CREATE TABLE leases6 (
    ip text PRIMARY KEY, client text NOT NULL, iaid bigint NOT NULL, state text NOT NULL,
    expires double precision NOT NULL, instance text NOT NULL DEFAULT '')"""
"""The PostgreSQL table."""

_SELECT = "SELECT ip, client, iaid, state, expires FROM leases6"
_UPSERT = """
INSERT INTO leases6 AS l (ip, client, iaid, state, expires, instance) VALUES ({})
ON CONFLICT (ip) DO UPDATE SET client = excluded.client, iaid = excluded.iaid,
    state = excluded.state, expires = excluded.expires, instance = excluded.instance
WHERE l.client = excluded.client OR l.expires <= {}
RETURNING ip
"""
_UPSERT_SQLITE = _UPSERT.format("?, ?, ?, ?, ?, ?", "?")
_UPSERT_PG = _UPSERT.format("$1, $2, $3, $4, $5, $6", "$7")


def lease6_from_row(
    ip: str, client: str, iaid: int, state: str, expires: float, source: str
) -> Lease6:
    """A Lease6 from its stored columns; StoreError names the database and the address."""
    try:
        return Lease6(IPv6Address(ip), client, int(iaid), LeaseState(state), float(expires))
    except ValueError as exc:
        raise StoreError(f"{source}: bad IPv6 lease row for {ip}: {exc}") from None


def _row(row: Any, source: str) -> Lease6:
    return lease6_from_row(row[0], row[1], row[2], row[3], row[4], source)


def wanted(changes: Sequence[Lease6]) -> list[Lease6]:
    """The changes the store keeps: offers live only in memory (as for IPv4)."""
    return [c for c in changes if c.state is not LeaseState.OFFERED]


def _values(lease: Lease6, instance: str, now: float) -> tuple[Any, ...]:
    return (
        str(lease.ip),
        lease.client,
        lease.iaid,
        lease.state.value,
        lease.expires,
        instance,
        now,
    )


def sqlite_load6(store: SqliteLike) -> list[Lease6]:
    """Every stored IPv6 lease (worker thread)."""
    rows = store.db.execute(_SELECT).fetchall()
    return [_row(row, str(store.path)) for row in rows]


def sqlite_commit6(store: SqliteLike, changes: Sequence[Lease6], now: float) -> list[Lease6]:
    """Apply changes, each atomically (one statement, autocommit); the leases that refused them
    (another client's live lease on the address), for the caller to learn (worker thread)."""
    db, source, refused = store.db, str(store.path), []
    for lease in wanted(changes):
        ip = str(lease.ip)
        if lease.state is LeaseState.FREE:
            db.execute("DELETE FROM leases6 WHERE ip = ? AND client = ?", (ip, lease.client))
            continue
        if db.execute(_UPSERT_SQLITE, _values(lease, store.instance, now)).fetchone() is None:
            row = db.execute(f"{_SELECT} WHERE ip = ?", (ip,)).fetchone()
            if row is not None:
                refused.append(_row(row, source))
    return refused


async def pg_load6(conn: Any, source: str) -> list[Lease6]:
    """Every stored IPv6 lease."""
    return [_row(row, source) for row in await conn.fetch(_SELECT)]


async def pg_commit6(
    conn: Any, changes: Sequence[Lease6], instance: str, now: float, source: str
) -> list[Lease6]:
    """Apply changes, each atomically (one statement); the leases that refused them."""
    refused: list[Lease6] = []
    for lease in wanted(changes):
        if lease.state is LeaseState.FREE:
            await conn.execute(
                "DELETE FROM leases6 WHERE ip = $1 AND client = $2", str(lease.ip), lease.client
            )
            continue
        if await conn.fetchrow(_UPSERT_PG, *_values(lease, instance, now)) is None:
            row = await conn.fetchrow(f"{_SELECT} WHERE ip = $1", str(lease.ip))
            if row is not None:
                refused.append(_row(row, source))
    return refused

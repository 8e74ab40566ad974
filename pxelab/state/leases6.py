"""DHCPv6 leases in the state store: the `leases6` table (schema version 2, `since` in 4) and its
reads and writes for both backends, called by SqliteStore (worker thread) and PostgresStore.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any, Protocol

from pxelab.dhcp.leases import LeaseState
from pxelab.dhcp6.leases import Lease6
from pxelab.state import StoreError

__all__ = ["ADD_SINCE", "COLUMNS", "PG_COMMIT_LEASE6", "PG_LEASES6", "PG_LEASES6_V2"]
__all__ += ["SQLITE_LEASES6", "SQLITE_LEASES6_V2", "Lease6", "lease6_from_row", "lease6_to_row"]
__all__ += ["pg_active6", "pg_commit6", "pg_load6", "sqlite_active6", "sqlite_commit6"]
__all__ += ["sqlite_load6", "wanted"]


class SqliteLike(Protocol):
    """What the SQLite functions use of the SqliteStore."""

    @property
    def db(self) -> sqlite3.Connection: ...

    instance: str
    path: Path


_TABLE = """CREATE TABLE leases6 (
    ip {text} PRIMARY KEY, client {text} NOT NULL, iaid {int} NOT NULL, state {text} NOT NULL,
    expires {real} NOT NULL, instance {text} NOT NULL DEFAULT ''{since})"""
SQLITE_LEASES6_V2 = _TABLE.format(text="TEXT", int="INTEGER", real="REAL", since="")
"""The SQLite table as version 2 made it (the migration from version 1 makes it so)."""
SQLITE_LEASES6 = _TABLE.format(
    text="TEXT", int="INTEGER", real="REAL", since=",\n    since REAL NOT NULL DEFAULT 0"
)
"""The SQLite table: one row per address (its compressed text form), like `leases`. A write
wins over the row of the same client (any IA: firmware and its network stack ask with different
IAIDs for one reserved address) or over an expired one; `since` orders decisions as for IPv4."""
_PG = {"text": "text", "int": "bigint", "real": "double precision"}
PG_LEASES6_V2 = _TABLE.format(**_PG, since="")
"""The PostgreSQL table as version 2 made it."""
PG_LEASES6 = _TABLE.format(**_PG, since=",\n    since double precision NOT NULL DEFAULT 0")
"""The PostgreSQL table."""
ADD_SINCE = "ALTER TABLE leases6 ADD COLUMN since {} NOT NULL DEFAULT 0"
"""Version 3 -> 4, with the column type of the backend."""

PG_COMMIT_LEASE6 = """CREATE FUNCTION pxelab_commit_lease6(
    p_ip text, p_client text, p_iaid bigint, p_state text, p_expires double precision,
    p_since double precision, p_instance text, p_now double precision, p_notify text)
RETURNS TABLE (h_ip text, h_client text, h_iaid bigint, h_state text,
    h_expires double precision, h_since double precision)
LANGUAGE plpgsql AS $$
-- One DHCPv6 lease change, atomically, in one round trip: the rules of pxelab_commit_lease with
-- the client and IA in place of the MAC. Applied: no row, and a NOTIFY. Refused: the lease that
-- refused it (another client's live lease on the address, or a binding of this IA elsewhere
-- decided later). An advisory lock per IA serialises its bindings (there is no unique index:
-- one client may hold one address under several IAs).
DECLARE
    done text;
    attempts integer := 0;
BEGIN
    IF p_state = 'free' THEN
        DELETE FROM leases6 l WHERE l.ip = p_ip AND l.client = p_client AND l.iaid = p_iaid
            AND l.since = p_since;
        IF FOUND THEN
            PERFORM pg_notify('pxelab', p_notify);
        END IF;
        RETURN;
    END IF;
    IF p_state = 'bound' THEN
        PERFORM pg_advisory_xact_lock(6, hashtext(p_client || '/' || p_iaid));
    END IF;
    LOOP
        h_ip := NULL;
        BEGIN
            IF p_state = 'bound' THEN
                SELECT l.ip, l.client, l.iaid, l.state, l.expires, l.since
                INTO h_ip, h_client, h_iaid, h_state, h_expires, h_since FROM leases6 l
                WHERE l.client = p_client AND l.iaid = p_iaid AND l.ip <> p_ip
                    AND l.state = 'bound' AND l.since > p_since;
                IF FOUND THEN
                    RETURN NEXT;
                    RETURN;
                END IF;
                DELETE FROM leases6 l WHERE l.client = p_client AND l.iaid = p_iaid
                    AND l.ip <> p_ip AND l.state = 'bound';
            END IF;
            INSERT INTO leases6 AS l (ip, client, iaid, state, expires, since, instance)
            VALUES (p_ip, p_client, p_iaid, p_state, p_expires, p_since, p_instance)
            ON CONFLICT (ip) DO UPDATE SET
                client = EXCLUDED.client, iaid = EXCLUDED.iaid, state = EXCLUDED.state,
                expires = EXCLUDED.expires, since = EXCLUDED.since, instance = EXCLUDED.instance
            WHERE l.client = EXCLUDED.client OR l.expires <= p_now
            RETURNING l.ip INTO done;
            IF done IS NULL THEN
                SELECT l.ip, l.client, l.iaid, l.state, l.expires, l.since
                INTO h_ip, h_client, h_iaid, h_state, h_expires, h_since
                FROM leases6 l WHERE l.ip = p_ip;
                RAISE EXCEPTION 'refused' USING ERRCODE = 'PX001';  -- undo the DELETE
            END IF;
            PERFORM pg_notify('pxelab', p_notify);
            RETURN;
        EXCEPTION
            WHEN SQLSTATE 'PX001' THEN
                IF h_ip IS NOT NULL THEN
                    RETURN NEXT;
                    RETURN;
                END IF;  -- the holder was gone when read: try again
            WHEN deadlock_detected THEN
                attempts := attempts + 1;
                IF attempts >= 8 THEN
                    RAISE;
                END IF;
        END;
    END LOOP;
END
$$"""
"""Version 4: one IPv6 lease change, as `StateStore.commit_leases6` describes it."""

COLUMNS = "ip, client, iaid, state, expires, since"
"""The columns `lease6_from_row` takes, in its order."""
_SELECT = f"SELECT {COLUMNS} FROM leases6"
_ACTIVE = f"SELECT {COLUMNS}, instance FROM leases6 WHERE expires > {{}}"
_COMMIT_PG = "SELECT * FROM pxelab_commit_lease6($1, $2, $3, $4, $5, $6, $7, $8, $9)"
_UPSERT_SQLITE = """
INSERT INTO leases6 AS l (ip, client, iaid, state, expires, since, instance)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (ip) DO UPDATE SET client = excluded.client, iaid = excluded.iaid,
    state = excluded.state, expires = excluded.expires, since = excluded.since,
    instance = excluded.instance
WHERE l.client = excluded.client OR l.expires <= ?
RETURNING ip
"""


def lease6_from_row(row: Sequence[Any], source: str) -> Lease6:
    """A Lease6 from its stored columns (`COLUMNS`, in order); StoreError names the database
    and the row."""
    try:
        ip, client, iaid, state, expires, since = row[:6]
        return Lease6(
            IPv6Address(ip), str(client), int(iaid), LeaseState(state), float(expires), float(since)
        )
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{source}: bad IPv6 lease row {list(row)!r}: {exc}") from None


def lease6_to_row(lease: Lease6) -> list[Any]:
    """The stored columns of a Lease6 (`COLUMNS`), also what a notification carries."""
    return [str(lease.ip), lease.client, lease.iaid, lease.state.value, lease.expires, lease.since]


def wanted(changes: Sequence[Lease6]) -> list[Lease6]:
    """The changes the store keeps: offers live only in memory (as for IPv4)."""
    return [c for c in changes if c.state is not LeaseState.OFFERED]


def _by_address(rows: Sequence[Any], source: str) -> list[tuple[Lease6, str]]:
    """Active rows (COLUMNS, instance) as leases with their instance, in address order."""
    held = [(lease6_from_row(row, source), str(row[6])) for row in rows]
    return sorted(held, key=lambda pair: pair[0].ip)


def sqlite_load6(store: SqliteLike) -> list[Lease6]:
    """Every stored IPv6 lease (worker thread)."""
    rows = store.db.execute(_SELECT).fetchall()
    return [lease6_from_row(row, str(store.path)) for row in rows]


def sqlite_active6(store: SqliteLike, now: float) -> list[tuple[Lease6, str]]:
    """Every active IPv6 lease with the instance that granted it (worker thread)."""
    rows = store.db.execute(_ACTIVE.format("?"), (now,)).fetchall()
    return _by_address(rows, str(store.path))


def sqlite_commit6(store: SqliteLike, changes: Sequence[Lease6], now: float) -> list[Lease6 | None]:
    """Apply changes (offers already left out), each in a transaction of its own; per change,
    None when applied, else the lease that refused it (worker thread)."""
    holders: list[Lease6 | None] = []
    for lease in changes:
        store.db.execute("BEGIN IMMEDIATE")
        try:
            holder = _sqlite_apply6(store, lease, now)
        except BaseException:
            store.db.execute("ROLLBACK")
            raise
        store.db.execute("COMMIT" if holder is None else "ROLLBACK")  # refused: undo it all
        holders.append(holder)
    return holders


def _sqlite_apply6(store: SqliteLike, lease: Lease6, now: float) -> Lease6 | None:
    """One change inside a transaction, by the rules of `pxelab_commit_lease6`: None when it
    applied, else the lease that refused it (the caller then rolls back)."""
    db, source = store.db, str(store.path)
    ip, ia = str(lease.ip), (lease.client, lease.iaid)
    if lease.state is LeaseState.FREE:
        db.execute(
            "DELETE FROM leases6 WHERE ip = ? AND client = ? AND iaid = ? AND since = ?",
            (ip, *ia, lease.since),
        )
        return None
    if lease.state is LeaseState.BOUND:
        newer = db.execute(
            f"{_SELECT} WHERE client = ? AND iaid = ? AND ip <> ? AND state = 'bound' "
            "AND since > ?",
            (*ia, ip, lease.since),
        ).fetchone()
        if newer is not None:
            return lease6_from_row(newer, source)
        db.execute(
            "DELETE FROM leases6 WHERE client = ? AND iaid = ? AND ip <> ? AND state = 'bound'",
            (*ia, ip),
        )
    if db.execute(_UPSERT_SQLITE, (*lease6_to_row(lease), store.instance, now)).fetchone():
        return None
    return lease6_from_row(db.execute(f"{_SELECT} WHERE ip = ?", (ip,)).fetchone(), source)


async def pg_load6(conn: Any, source: str) -> list[Lease6]:
    """Every stored IPv6 lease."""
    return [lease6_from_row(row, source) for row in await conn.fetch(_SELECT)]


async def pg_active6(conn: Any, now: float, source: str) -> list[tuple[Lease6, str]]:
    """Every active IPv6 lease with the instance that granted it."""
    return _by_address(await conn.fetch(_ACTIVE.format("$1"), now), source)


async def pg_commit6(
    conn: Any, changes: Sequence[Lease6], instance: str, now: float, source: str, origin: str
) -> list[Lease6 | None]:
    """Apply changes (offers already left out), each atomically in one round trip; per change,
    None when applied (its NOTIFY, tagged with `origin`, carries the lease), else the lease
    that refused it."""
    holders: list[Lease6 | None] = []
    for lease in changes:
        row = lease6_to_row(lease)
        notify = {"o": origin, "k": "lease6", "m": lease.client, "l": row}
        held = await conn.fetchrow(_COMMIT_PG, *row, instance, now, json.dumps(notify))
        holders.append(None if held is None else lease6_from_row(held, source))
    return holders

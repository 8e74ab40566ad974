"""The PostgreSQL schema, created or migrated at open under an advisory lock, and its version check."""

from __future__ import annotations

from typing import Any

from pxelab.state import SCHEMA_VERSION, StoreError
from pxelab.state.leases6 import ADD_SINCE, PG_COMMIT_LEASE6, PG_LEASES6, PG_LEASES6_V2
from pxelab.state.sessions import PG_SESSIONS

LOCK_KEY = 0x7078656C6162  # "pxelab": serialises schema work between instances starting at once

SEEN = """CREATE TABLE seen (
    mac text PRIMARY KEY, arch text NOT NULL, firmware text NOT NULL, address text NOT NULL,
    first double precision NOT NULL, last double precision NOT NULL)"""
"""Version 3: MACs seen that nothing could serve."""

COMMIT_LEASE = """CREATE FUNCTION pxelab_commit_lease(
    p_ip bigint, p_mac text, p_state text, p_expires double precision, p_since double precision,
    p_instance text, p_now double precision, p_notify text)
RETURNS TABLE (
    h_ip bigint, h_mac text, h_state text, h_expires double precision, h_since double precision)
LANGUAGE plpgsql AS $$
-- One lease change, atomically, in one round trip (the rules of LeaseStore.commit_leases).
-- Applied: no row. Refused: the lease that refused it, either another MAC's live lease on the
-- address, or a binding of this MAC elsewhere decided after this one (the client moved on).
-- FREE deletes only the record it names (this MAC, this since); BOUND first drops the MAC's
-- other bound row (one bound address per MAC), undone when refused.
DECLARE
    done bigint;
    attempts integer := 0;
BEGIN
    IF p_state = 'free' THEN
        DELETE FROM leases l WHERE l.ip = p_ip AND l.mac = p_mac AND l.since = p_since;
        IF FOUND THEN  -- nothing to tell when the record named was not there
            PERFORM pg_notify('pxelab', p_notify);
        END IF;
        RETURN;
    END IF;
    LOOP
        h_ip := NULL;
        BEGIN
            IF p_state = 'bound' THEN
                SELECT l.ip, l.mac, l.state, l.expires, l.since
                INTO h_ip, h_mac, h_state, h_expires, h_since FROM leases l
                WHERE l.mac = p_mac AND l.ip <> p_ip AND l.state = 'bound' AND l.since > p_since;
                IF FOUND THEN
                    RETURN NEXT;
                    RETURN;
                END IF;
                DELETE FROM leases l WHERE l.mac = p_mac AND l.ip <> p_ip AND l.state = 'bound';
            END IF;
            INSERT INTO leases AS l (ip, mac, state, expires, since, instance)
            VALUES (p_ip, p_mac, p_state, p_expires, p_since, p_instance)
            ON CONFLICT (ip) DO UPDATE SET
                mac = EXCLUDED.mac, state = EXCLUDED.state, expires = EXCLUDED.expires,
                since = EXCLUDED.since, instance = EXCLUDED.instance
            WHERE l.mac = EXCLUDED.mac OR l.expires <= p_now
            RETURNING l.ip INTO done;
            IF done IS NULL THEN
                SELECT l.ip, l.mac, l.state, l.expires, l.since
                INTO h_ip, h_mac, h_state, h_expires, h_since FROM leases l WHERE l.ip = p_ip;
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
            WHEN unique_violation OR deadlock_detected THEN
                -- another instance bound this MAC (or crossed our rows) at the same moment
                attempts := attempts + 1;
                IF attempts >= 8 THEN
                    RAISE;
                END IF;
        END;
    END LOOP;
END
$$"""
"""Version 4 (`since`): one lease change, as `LeaseStore.commit_leases` describes it."""

SCHEMA = (
    "CREATE TABLE schema_version (version integer NOT NULL)",
    """CREATE TABLE leases (
        ip bigint PRIMARY KEY, mac text NOT NULL, state text NOT NULL,
        expires double precision NOT NULL, instance text NOT NULL DEFAULT '',
        since double precision NOT NULL DEFAULT 0)""",
    "CREATE UNIQUE INDEX leases_bound_mac ON leases (mac) WHERE state = 'bound'",
    """CREATE TABLE install (
        mac text PRIMARY KEY, state text NOT NULL, changed double precision,
        changed_by text NOT NULL DEFAULT '', generation integer NOT NULL DEFAULT 0)""",
    """CREATE TABLE events (
        id bigserial PRIMARY KEY, mac text NOT NULL, time double precision NOT NULL,
        data jsonb NOT NULL)""",
    "CREATE INDEX events_mac ON events (mac, id)",
    """CREATE TABLE audit (
        id bigserial PRIMARY KEY, time double precision NOT NULL, who text NOT NULL,
        client text NOT NULL, action text NOT NULL, target text NOT NULL,
        allowed boolean NOT NULL, reason text NOT NULL)""",
    """CREATE TABLE tokens (
        name text PRIMARY KEY, digest text NOT NULL, created double precision NOT NULL)""",
    "CREATE TABLE secret (id integer PRIMARY KEY CHECK (id = 1), value bytea NOT NULL)",
    SEEN,
    COMMIT_LEASE,
    PG_LEASES6,
    PG_COMMIT_LEASE6,
    PG_SESSIONS,
)
"""The schema at SCHEMA_VERSION."""

UPSERT_SEEN = """
INSERT INTO seen AS s (mac, arch, firmware, address, first, last) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (mac) DO UPDATE SET
    arch = CASE WHEN EXCLUDED.arch = '' THEN s.arch ELSE EXCLUDED.arch END,
    firmware = CASE WHEN EXCLUDED.firmware = '' THEN s.firmware ELSE EXCLUDED.firmware END,
    address = CASE WHEN EXCLUDED.address = '' THEN s.address ELSE EXCLUDED.address END,
    first = least(s.first, EXCLUDED.first), last = greatest(s.last, EXCLUDED.last)
"""
"""Remember an unservable MAC: first seen kept, the rest updated with what is known."""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (PG_LEASES6_V2,),
    2: (SEEN,),
    3: (
        "ALTER TABLE leases ADD COLUMN since double precision NOT NULL DEFAULT 0",
        "DROP FUNCTION pxelab_commit_lease",
        COMMIT_LEASE,
        ADD_SINCE.format("double precision"),
        PG_COMMIT_LEASE6,
        PG_SESSIONS,
    ),
}
"""Statements that take a database from version N to N + 1."""


async def prepare(conn: Any, name: str) -> None:
    """Create the schema in an empty database, or migrate an older one; StoreError for a newer."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        if not exists:
            for statement in SCHEMA:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION)
            return
        version = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{name}: schema version {version} is newer than this pxelab's "
                f"({SCHEMA_VERSION}): upgrade pxelab on every instance"
            )
        while version < SCHEMA_VERSION:
            for statement in MIGRATIONS.get(version, ()):
                await conn.execute(statement)
            version += 1
            await conn.execute("UPDATE schema_version SET version = $1", version)

"""The PostgreSQL schema, created or migrated at open under an advisory lock, and its version check."""

from __future__ import annotations

from typing import Any

from pxelab.state import SCHEMA_VERSION, StoreError

LOCK_KEY = 0x7078656C6162  # "pxelab": serialises schema work between instances starting at once

SCHEMA = (
    "CREATE TABLE schema_version (version integer NOT NULL)",
    """CREATE TABLE leases (
        ip bigint PRIMARY KEY, mac text NOT NULL, state text NOT NULL,
        expires double precision NOT NULL, instance text NOT NULL DEFAULT '')""",
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
)
"""The schema at SCHEMA_VERSION."""

MIGRATIONS: dict[int, tuple[str, ...]] = {}
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

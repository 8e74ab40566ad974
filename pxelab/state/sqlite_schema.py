"""The SQLite schema at SCHEMA_VERSION, its migrations, and the upserts the store runs."""

from pxelab.state.leases6 import ADD_SINCE, SQLITE_LEASES6, SQLITE_LEASES6_V2
from pxelab.state.sessions import SQLITE_SESSIONS

SEEN = """CREATE TABLE seen (
    mac TEXT PRIMARY KEY, arch TEXT NOT NULL, firmware TEXT NOT NULL,
    address TEXT NOT NULL, first REAL NOT NULL, last REAL NOT NULL)"""
"""Version 3: MACs seen that nothing could serve."""

SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE leases (
        ip INTEGER PRIMARY KEY, mac TEXT NOT NULL, state TEXT NOT NULL,
        expires REAL NOT NULL, instance TEXT NOT NULL DEFAULT '',
        since REAL NOT NULL DEFAULT 0)""",
    "CREATE UNIQUE INDEX leases_bound_mac ON leases (mac) WHERE state = 'bound'",
    """CREATE TABLE install (
        mac TEXT PRIMARY KEY, state TEXT NOT NULL, changed REAL,
        changed_by TEXT NOT NULL DEFAULT '', generation INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT NOT NULL, time REAL NOT NULL,
        data TEXT NOT NULL)""",
    "CREATE INDEX events_mac ON events (mac, id)",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, who TEXT NOT NULL,
        client TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
        allowed INTEGER NOT NULL, reason TEXT NOT NULL)""",
    "CREATE TABLE tokens (name TEXT PRIMARY KEY, digest TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE secret (id INTEGER PRIMARY KEY CHECK (id = 1), value BLOB NOT NULL)",
    SQLITE_LEASES6,
    SEEN,
    SQLITE_SESSIONS,
)
"""The schema at SCHEMA_VERSION, created in one transaction."""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (SQLITE_LEASES6_V2,),
    2: (SEEN,),
    3: (
        "ALTER TABLE leases ADD COLUMN since REAL NOT NULL DEFAULT 0",
        ADD_SINCE.format("REAL"),
        SQLITE_SESSIONS,
    ),
}
"""Statements that take a database from version N to N + 1."""

UPSERT_LEASE = """
INSERT INTO leases (ip, mac, state, expires, since, instance) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (ip) DO UPDATE SET
    mac = excluded.mac, state = excluded.state, expires = excluded.expires,
    since = excluded.since, instance = excluded.instance
WHERE leases.mac = excluded.mac OR leases.expires <= ?
RETURNING ip
"""

UPSERT_SEEN = """
INSERT INTO seen (mac, arch, firmware, address, first, last) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (mac) DO UPDATE SET
    arch = CASE WHEN excluded.arch = '' THEN seen.arch ELSE excluded.arch END,
    firmware = CASE WHEN excluded.firmware = '' THEN seen.firmware ELSE excluded.firmware END,
    address = CASE WHEN excluded.address = '' THEN seen.address ELSE excluded.address END,
    first = min(seen.first, excluded.first), last = max(seen.last, excluded.last)
"""

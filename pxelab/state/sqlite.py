"""The embedded backend: one SQLite database in `state_dir` (WAL), every call in one worker thread.

On first open it imports what older versions kept in `state_dir`: the lease rows of
`dhcp-leases.sqlite3` and the install-state files `install/*.json` (the old files are left alone).
Other processes on the same file (the CLI beside the daemon) are noticed by polling SQLite's
`data_version` once a second: the install view is reloaded and the listeners told.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.events import Event
from pxelab.hosts.install import HostState, StateError, parse_state
from pxelab.hosts.inventory import normalize_mac
from pxelab.state import SCHEMA_VERSION, AuditRecord, SeenRecord, StoreError, TokenRecord
from pxelab.state.base import (
    EVENTS_PER_HOST,
    LEASE_COLUMNS,
    Refused,
    Views,
    due_for_pruning,
    event_from_text,
    event_to_text,
    host_state_from_row,
    host_state_to_row,
    lease_from_row,
    log,
)
from pxelab.state.leases6 import Lease6, sqlite_active6, sqlite_commit6, sqlite_load6, wanted
from pxelab.state.sessions import SqliteSessions
from pxelab.state.sqlite_schema import MIGRATIONS, SCHEMA, UPSERT_LEASE, UPSERT_SEEN

FILE_NAME = "pxelab.sqlite3"
"""The database file in `state_dir`."""
LEGACY_LEASES = "dhcp-leases.sqlite3"
"""Where pxelab kept its leases before the state store (imported on first open)."""
LEGACY_INSTALL_DIR = "install"
"""Where pxelab kept one install-state JSON file per MAC before the state store."""

T = TypeVar("T")


class SqliteStore(Views, SqliteSessions):
    """The StateStore on one SQLite file; `open` must be awaited before anything else.
    Status-page sessions and token revocation come from `SqliteSessions`."""

    def __init__(
        self,
        path: Path,
        *,
        instance: str | None = None,
        legacy_dir: Path | None = None,
        poll_interval: float = 1.0,
        events_per_host: int = EVENTS_PER_HOST,
    ) -> None:
        super().__init__(instance)
        self.path = path
        self.legacy_dir = legacy_dir
        self.poll_interval = poll_interval
        self.events_per_host = events_per_host
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._data_version = 0
        self._since_prune: dict[str, int] = {}
        self._poller: asyncio.Task[None] | None = None
        self._secret: bytes | None = None

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in the worker thread; sqlite3 errors become StoreError naming the file."""
        if self._executor is None:
            raise StoreError(f"{self.path}: the state store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot {what}: {exc}") from None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the state store is not open")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (worker thread only)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- open and close ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open or create the database, migrate it, import legacy state, load the views."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pxelab-sqlite")
        try:
            states = await self._call("open the state database", self._open_sync)
        except BaseException:
            await self.close()
            raise
        self._replace_view(states)
        if self.poll_interval > 0:
            self._poller = asyncio.create_task(self._poll(), name="pxelab-sqlite-poll")

    def _open_sync(self) -> dict[str, HostState]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create its directory: {exc.strerror}") from None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 5000")
        mode = self.db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{self.path}: journal_mode is {mode}, WAL could not be set")
        # WAL + NORMAL: a commit is appended to the WAL without an fsync. A killed process loses
        # nothing (the OS has the pages); a power cut can lose the last few changes.
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self._transaction() as db:
            exists = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if exists is None:
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
                self._import_legacy()
            else:
                self._migrate()
        self._data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
        return self._load_install_sync()

    def _migrate(self) -> None:
        row = self.db.execute("SELECT max(version) FROM schema_version").fetchone()
        version = int(row[0]) if row and row[0] is not None else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this pxelab's "
                f"({SCHEMA_VERSION}): upgrade pxelab or use another state_dir"
            )
        while version < SCHEMA_VERSION:
            for statement in MIGRATIONS.get(version, ()):
                self.db.execute(statement)
            version += 1
            self.db.execute("UPDATE schema_version SET version = ?", (version,))

    def _import_legacy(self) -> None:
        """Copy the lease rows and install-state files of older versions (first open only)."""
        if self.legacy_dir is None:
            return
        leases = self.legacy_dir / LEGACY_LEASES
        if leases.is_file():
            try:
                old = sqlite3.connect(f"file:{leases}?mode=ro", uri=True)
                try:
                    rows = old.execute("SELECT ip, mac, state, expires FROM leases").fetchall()
                finally:
                    old.close()
            except sqlite3.Error as exc:
                raise StoreError(f"{leases}: cannot import the old leases: {exc}") from None
            for ip, mac, state, expires in rows:
                with contextlib.suppress(Refused):  # rows were unique by address already
                    lease = lease_from_row((ip, mac, state, expires, 0.0), str(leases))
                    self._apply_lease(lease, 0.0)
            log.info("state: imported %d leases from %s", len(rows), leases)
        directory = self.legacy_dir / LEGACY_INSTALL_DIR
        count = 0
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
            try:
                mac = normalize_mac(path.stem.replace("-", ":"))
                state = parse_state(json.loads(path.read_text(encoding="utf-8")), str(path))
            except (ValueError, OSError, StateError) as exc:
                log.warning("state: not imported: %s: %s", path, exc)
                continue
            self._write_install(mac, state)
            count += 1
        if count:
            log.info("state: imported %d install states from %s", count, directory)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._executor is None:
            return
        if self._db is not None:
            with contextlib.suppress(StoreError):
                await self._call("close", self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _close_sync(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        self._db = None

    async def _poll(self) -> None:
        """Notice other processes' commits and reload the install view when there are any."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                states = await self._call("poll", self._poll_sync)
            except StoreError as exc:
                log.warning("state: %s", exc)
                continue
            if states is not None:
                self._emit("install", self._replace_view(states), remote=True)

    def _poll_sync(self) -> dict[str, HostState] | None:
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return None
        self._data_version = version
        return self._load_install_sync()

    # -- leases -----------------------------------------------------------------------------

    async def load_leases(self) -> list[Lease]:
        rows = await self._call(
            "read leases",
            lambda: self.db.execute(f"SELECT {LEASE_COLUMNS} FROM leases").fetchall(),
        )
        return [lease_from_row(row, str(self.path)) for row in rows]

    async def commit_leases(self, changes: Sequence[Lease], now: float) -> list[Lease]:
        """Apply lease changes, each atomically; the leases that refused them (see StateStore)."""
        kept = [c for c in changes if c.state is not LeaseState.OFFERED]
        if not kept:
            return []
        holders = await self._call("write leases", self._commit_sync, kept, now)
        return self._settled("lease", [c.mac for c in kept], holders)

    def _commit_sync(self, changes: Sequence[Lease], now: float) -> list[Lease | None]:
        """Per change: None when applied, else the lease that holds its address."""
        holders: list[Lease | None] = []
        for change in changes:
            try:
                with self._transaction():
                    self._apply_lease(change, now)
                holders.append(None)
            except Refused as refused:
                holders.append(refused.holder)
        return holders

    def _apply_lease(self, lease: Lease, now: float) -> None:
        """One change inside a transaction; Refused (roll back!) names the lease that refused it
        (the rules are those of `LeaseStore.commit_leases`, as in the PostgreSQL function)."""
        ip, mac, source = int(lease.ip), lease.mac, str(self.path)
        if lease.state is LeaseState.FREE:
            self.db.execute(
                "DELETE FROM leases WHERE ip = ? AND mac = ? AND since = ?", (ip, mac, lease.since)
            )
            return
        if lease.state is LeaseState.BOUND:
            newer = self.db.execute(
                f"SELECT {LEASE_COLUMNS} FROM leases "
                "WHERE mac = ? AND ip <> ? AND state = 'bound' AND since > ?",
                (mac, ip, lease.since),
            ).fetchone()
            if newer is not None:
                raise Refused(lease_from_row(newer, source))
            self.db.execute(
                "DELETE FROM leases WHERE mac = ? AND ip <> ? AND state = 'bound'", (mac, ip)
            )
        values = (ip, mac, lease.state.value, lease.expires, lease.since, self.instance, now)
        if self.db.execute(UPSERT_LEASE, values).fetchone() is not None:
            return
        held = self.db.execute(f"SELECT {LEASE_COLUMNS} FROM leases WHERE ip = ?", (ip,))
        raise Refused(lease_from_row(held.fetchone(), source))

    async def active_leases(self, now: float) -> list[tuple[Lease, str]]:
        rows = await self._call(
            "read leases",
            lambda: self.db.execute(
                f"SELECT {LEASE_COLUMNS}, instance FROM leases WHERE expires > ? ORDER BY ip",
                (now,),
            ).fetchall(),
        )
        return [(lease_from_row(row, str(self.path)), row[5]) for row in rows]

    async def load_leases6(self) -> list[Lease6]:
        return await self._call("read IPv6 leases", sqlite_load6, self)

    async def commit_leases6(self, changes: Sequence[Lease6], now: float) -> list[Lease6]:
        kept = wanted(changes)
        if not kept:
            return []
        holders = await self._call("write IPv6 leases", sqlite_commit6, self, kept, now)
        return self._settled("lease6", [c.client for c in kept], holders)

    async def active_leases6(self, now: float) -> list[tuple[Lease6, str]]:
        return await self._call("read IPv6 leases", sqlite_active6, self, now)

    # -- install states ---------------------------------------------------------------------

    def _load_install_sync(self) -> dict[str, HostState]:
        rows = self.db.execute(
            "SELECT mac, state, changed, changed_by, generation FROM install"
        ).fetchall()
        return {
            mac: host_state_from_row(state, changed, by, generation, str(self.path))
            for mac, state, changed, by, generation in rows
        }

    def _write_install(self, mac: str, state: HostState) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO install (mac, state, changed, changed_by, generation) "
            "VALUES (?, ?, ?, ?, ?)",
            (mac, *host_state_to_row(state)),
        )

    async def set_install_state(self, mac: str, state: HostState) -> HostState:
        mac = normalize_mac(mac)
        await self._call("write the install state of " + mac, self._write_install, mac, state)
        self._set_view(mac, state)
        self._emit("install", [mac])
        return state

    async def forget_install_state(self, mac: str) -> None:
        mac = normalize_mac(mac)
        await self._call(
            "forget the install state of " + mac,
            lambda: self.db.execute("DELETE FROM install WHERE mac = ?", (mac,)),
        )
        self._set_view(mac, None)
        self._emit("install", [mac])

    # -- events -----------------------------------------------------------------------------

    async def add_events(self, events: Sequence[Event]) -> None:
        """Append; the store keeps the last `events_per_host` per MAC."""
        if events:
            await self._call("write events", self._add_events_sync, list(events))
            self._emit("event", dict.fromkeys(e.mac for e in events))

    def _add_events_sync(self, events: list[Event]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO events (mac, time, data) VALUES (?, ?, ?)",
                [(e.mac, e.time, event_to_text(e)) for e in events],
            )
            for mac in due_for_pruning(self._since_prune, events):
                db.execute(
                    "DELETE FROM events WHERE mac = ? AND id <= (SELECT id FROM events "
                    "WHERE mac = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (mac, mac, self.events_per_host),
                )

    async def events(self, mac: str) -> list[Event]:
        """One MAC's events, oldest first."""
        rows = await self._call(
            "read events",
            lambda: self.db.execute(
                "SELECT data FROM events WHERE mac = ? ORDER BY id DESC LIMIT ?",
                (mac, self.events_per_host),
            ).fetchall(),
        )
        return [event_from_text(row[0], str(self.path)) for row in reversed(rows)]

    async def recent_events(self, limit: int) -> list[Event]:
        """The newest events of all MACs, oldest first."""
        rows = await self._call(
            "read events",
            lambda: self.db.execute(
                "SELECT data FROM events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall(),
        )
        return [event_from_text(row[0], str(self.path)) for row in reversed(rows)]

    # -- audit, tokens, secret --------------------------------------------------------------

    async def audit(self, record: AuditRecord) -> None:
        await self._call(
            "write the audit trail",
            lambda: self.db.execute(
                "INSERT INTO audit (time, who, client, action, target, allowed, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.time,
                    record.who,
                    record.client,
                    record.action,
                    record.target,
                    int(record.allowed),
                    record.reason,
                ),
            ),
        )

    async def audit_records(self, limit: int) -> list[AuditRecord]:
        """The newest `limit` records, oldest first."""
        rows = await self._call(
            "read the audit trail",
            lambda: self.db.execute(
                "SELECT time, who, client, action, target, allowed, reason FROM audit "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall(),
        )
        return [
            AuditRecord(t, who, client, action, target, bool(allowed), reason)
            for t, who, client, action, target, allowed, reason in reversed(rows)
        ]

    async def add_token(self, token: TokenRecord) -> None:
        """StoreError when the name exists."""

        def insert() -> None:
            try:
                self.db.execute(
                    "INSERT INTO tokens (name, digest, created) VALUES (?, ?, ?)",
                    (token.name, token.digest, token.created),
                )
            except sqlite3.IntegrityError:
                raise StoreError(f"{self.path}: a token named {token.name!r} exists") from None

        await self._call("add a token", insert)
        self._emit("token", [token.name])

    async def tokens(self) -> list[TokenRecord]:
        rows = await self._call(
            "read tokens",
            lambda: self.db.execute(
                "SELECT name, digest, created FROM tokens ORDER BY name"
            ).fetchall(),
        )
        return [TokenRecord(name, digest, created) for name, digest, created in rows]

    async def secret(self) -> bytes:
        """The server secret: 32 random bytes, made once (atomically) and kept."""
        if self._secret is None:

            def get() -> bytes:
                self.db.execute(
                    "INSERT INTO secret (id, value) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
                    (secrets.token_bytes(32),),
                )
                return bytes(self.db.execute("SELECT value FROM secret WHERE id = 1").fetchone()[0])

            self._secret = await self._call("read the server secret", get)
        return self._secret

    # -- machines seen that nothing serves ----------------------------------------------------

    async def note_seen(self, records: Sequence[SeenRecord]) -> None:
        rows = [(r.mac, r.arch, r.firmware, r.address, r.first, r.last) for r in records]

        def upsert() -> None:
            with self._transaction() as db:
                db.executemany(UPSERT_SEEN, rows)

        if rows:
            await self._call("remember machines seen", upsert)

    async def seen(self) -> list[SeenRecord]:
        rows = await self._call(
            "read machines seen",
            lambda: self.db.execute(
                "SELECT mac, arch, firmware, address, first, last FROM seen ORDER BY last DESC"
            ).fetchall(),
        )
        return [SeenRecord(*row) for row in rows]

    async def forget_seen(self, mac: str) -> bool:
        count = await self._call(
            "forget a machine seen",
            lambda: self.db.execute("DELETE FROM seen WHERE mac = ?", (mac,)).rowcount,
        )
        return bool(count)

"""Durable DHCP leases: one SQLite database in WAL mode, one row per address, O(1) per change.

`SqliteLeaseStore` is a `LeaseStore`: its SQLite work runs in one worker thread, so the event loop
never waits on the disk. The adapter commits a reply's lease changes before it sends the reply,
so a `kill -9` loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path
from typing import TypeVar

from pxelab.dhcp.leases import Lease, LeaseState

FILE_NAME = "dhcp-leases.sqlite3"
"""The database file in `state_dir`."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    ip INTEGER PRIMARY KEY,
    mac TEXT NOT NULL,
    state TEXT NOT NULL,
    expires REAL NOT NULL
)
"""
_FREE_TO_TAKE = "(leases.mac = :mac OR leases.state = 'free' OR leases.expires <= :now)"
"""A row that a change by `mac` may overwrite at `now`: its own, or nobody's any more."""
_UPSERT = f"""
INSERT INTO leases (ip, mac, state, expires) VALUES (:ip, :mac, :state, :expires)
ON CONFLICT (ip) DO UPDATE SET mac = excluded.mac, state = excluded.state,
    expires = excluded.expires
WHERE {_FREE_TO_TAKE}
"""
_DELETE = f"DELETE FROM leases WHERE ip = :ip AND {_FREE_TO_TAKE}"
_HELD = f"SELECT ip, mac, state, expires FROM leases WHERE ip = :ip AND NOT {_FREE_TO_TAKE}"

T = TypeVar("T")


class LeaseStoreError(Exception):
    """The lease database cannot be opened, read or written; the message names the file."""


class SqliteLeaseStore:
    """Lease rows keyed by address; FREE deletes the row, anything else replaces it, unless
    another MAC holds the address there (then the change is refused and that lease returned)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pxelab-leases")
        self._db: sqlite3.Connection | None = None
        self._closed: Future[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> SqliteLeaseStore:
        """Open (or create) the database in the worker thread; LeaseStoreError names the file."""
        store = cls(path)
        try:
            await store._run(store._open)
        except BaseException:
            store._executor.shutdown(wait=False)
            raise
        return store

    async def load_leases(self) -> list[Lease]:
        """Every stored lease (expired ones too: the table forgets them on its next sweep)."""
        return await self._run(self._load)

    async def commit_leases(self, changes: Sequence[Lease], now: float) -> list[Lease]:
        """Apply changes in one transaction, each on its own condition; returns, for each change
        refused because another MAC holds that address here, the lease held there.

        OFFERED holds are neither written nor checked: an offer hands nothing out (the REQUEST
        is checked again), so after a restart the worst case is one NAK. A batch of offers only
        (most DISCOVERs) returns at once, without a trip to the worker thread.
        """
        durable = [lease for lease in changes if lease.state is not LeaseState.OFFERED]
        if not durable:
            return []
        return await self._run(self._commit, durable, now)

    def close(self) -> None:
        """Checkpoint the WAL into the database and close it, after the work queued before;
        safe to call more than once."""
        if self._closed is None:
            self._closed = self._executor.submit(self._close)
            self._executor.shutdown(wait=False)

    async def wait_closed(self) -> None:
        """Return once the database is closed."""
        self.close()
        if self._closed is not None:
            await asyncio.wrap_future(self._closed)

    # -- in the worker thread -------------------------------------------------------------------

    async def _run(self, work: Callable[..., T], *args: object) -> T:
        if self._closed is not None:
            raise LeaseStoreError(f"{self.path}: the lease database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise LeaseStoreError(f"{self.path}: the lease database is not open")
        return self._db

    def _open(self) -> None:
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise LeaseStoreError(f"{path}: journal_mode is {mode}, WAL could not be set")
            # WAL + NORMAL: each commit is appended to the WAL (no fsync per lease). A killed
            # process loses nothing (the OS has the pages); a power cut can lose the last few.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise LeaseStoreError(f"{path}: cannot open the lease database: {exc}") from exc

    def _load(self) -> list[Lease]:
        try:
            rows = self._connection().execute("SELECT ip, mac, state, expires FROM leases")
            return [self._lease(row) for row in rows.fetchall()]
        except sqlite3.Error as exc:
            raise LeaseStoreError(f"{self.path}: cannot read leases: {exc}") from exc

    def _lease(self, row: tuple[int, str, str, float]) -> Lease:
        ip, mac, state, expires = row
        try:
            return Lease(IPv4Address(ip), mac, LeaseState(state), float(expires))
        except ValueError as exc:
            raise LeaseStoreError(f"{self.path}: bad lease row for {ip}: {exc}") from exc

    def _commit(self, changes: list[Lease], now: float) -> list[Lease]:
        db = self._connection()
        refused: list[Lease] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for lease in changes:
                    held = self._apply(db, lease, now)
                    if held is not None:
                        refused.append(held)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LeaseStoreError(f"{self.path}: cannot write leases: {exc}") from exc
        return refused

    def _apply(self, db: sqlite3.Connection, lease: Lease, now: float) -> Lease | None:
        """Write one change unless another MAC holds its address; then return that lease."""
        values = {
            "ip": int(lease.ip),
            "mac": lease.mac,
            "state": lease.state.value,
            "expires": lease.expires,
            "now": now,
        }
        statement = _DELETE if lease.state is LeaseState.FREE else _UPSERT
        written = db.execute(statement, values).rowcount > 0
        if written:
            return None
        row = db.execute(_HELD, values).fetchone()
        return self._lease(row) if row is not None else None

    def _close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db = None

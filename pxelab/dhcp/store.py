"""Durable DHCP leases: one SQLite database in WAL mode, one row per address, O(1) per change.

`LeaseStore.save` is the LeaseTable's `on_change` hook; `load` gives the rows back at start-up.
A row is written before the reply that depends on it is sent, so a `kill -9` loses nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
from ipaddress import IPv4Address
from pathlib import Path

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


class LeaseStoreError(Exception):
    """The lease database cannot be opened or read; the message names the file."""


class LeaseStore:
    """Lease rows keyed by address; FREE deletes the row, anything else replaces it."""

    def __init__(self, path: Path) -> None:
        self.path = path
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
        except sqlite3.Error as exc:
            raise LeaseStoreError(f"{path}: cannot open the lease database: {exc}") from exc

    def load(self) -> list[Lease]:
        """Every stored lease (expired ones too: the table forgets them on its next sweep)."""
        try:
            rows = self._db.execute("SELECT ip, mac, state, expires FROM leases").fetchall()
        except sqlite3.Error as exc:
            raise LeaseStoreError(f"{self.path}: cannot read leases: {exc}") from exc
        leases = []
        for ip, mac, state, expires in rows:
            try:
                leases.append(Lease(IPv4Address(ip), mac, LeaseState(state), float(expires)))
            except ValueError as exc:
                raise LeaseStoreError(f"{self.path}: bad lease row for {ip}: {exc}") from exc
        return leases

    def save(self, lease: Lease) -> None:
        """Record one change (the LeaseTable `on_change` hook): one row written or deleted.

        OFFERED holds are not written: an offer hands nothing out (the REQUEST is checked against
        the table again), so after a restart the worst case is one NAK, never a shared address.
        """
        if lease.state is LeaseState.OFFERED:
            return
        if lease.state is LeaseState.FREE:
            self._db.execute("DELETE FROM leases WHERE ip = ?", (int(lease.ip),))
        else:
            self._db.execute(
                "INSERT OR REPLACE INTO leases (ip, mac, state, expires) VALUES (?, ?, ?, ?)",
                (int(lease.ip), lease.mac, lease.state.value, lease.expires),
            )

    def close(self) -> None:
        """Checkpoint the WAL into the database and close it."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

"""The SQLite state store: upgrade import, schema version, kill -9, codecs and the config key."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from threading import current_thread

import pytest

from pxelab.app.config import Config, build_config
from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.dhcp6.leases import Lease6
from pxelab.errors import ConfigError
from pxelab.events import Event
from pxelab.hosts.install import HostState, InstallState
from pxelab.state import SCHEMA_VERSION, SessionRecord, StoreError, TokenRecord
from pxelab.state.base import event_from_text, event_to_text
from pxelab.state.open import open_store
from pxelab.state.sqlite import FILE_NAME, SqliteStore
from pxelab.state.sqlite_schema import SCHEMA

A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
ROOT = Path(__file__).resolve().parents[2]


async def test_first_open_imports_old_leases_and_install_files(tmp_path: Path) -> None:
    # The lease database of pxelab before the state store: one row per address.
    with sqlite3.connect(tmp_path / "dhcp-leases.sqlite3") as old:
        old.execute(
            "CREATE TABLE leases (ip INTEGER PRIMARY KEY, mac TEXT NOT NULL,"
            " state TEXT NOT NULL, expires REAL NOT NULL)"
        )
        old.execute(
            "INSERT INTO leases VALUES (?, ?, 'bound', 500.0)", (int(IPv4Address("10.0.0.5")), A)
        )
        old.execute(
            "INSERT INTO leases VALUES (?, ?, 'declined', 600.0)", (int(IPv4Address("10.0.0.6")), B)
        )
    old.close()
    (tmp_path / "install").mkdir()
    old_state = {"state": "installed", "changed": 3.0, "by": "10.0.0.5", "generation": 0}
    (tmp_path / "install" / "52-54-00-00-00-0a.json").write_text(json.dumps(old_state))
    (tmp_path / "install" / "52-54-00-00-00-0b.json").write_text("{broken")  # skipped, logged
    store = open_store(Config(state_dir=tmp_path), instance="one")
    await store.open()
    try:
        assert sorted(await store.load_leases(), key=lambda lease: lease.ip) == [
            Lease(IPv4Address("10.0.0.5"), A, LeaseState.BOUND, 500.0),
            Lease(IPv4Address("10.0.0.6"), B, LeaseState.DECLINED, 600.0),
        ]
        assert store.install_state(A) == HostState(InstallState.INSTALLED, 3.0, "10.0.0.5")
        await store.forget_install_state(A)
    finally:
        await store.close()
    again = open_store(Config(state_dir=tmp_path))
    await again.open()  # the import ran once: the forgotten state stays forgotten
    try:
        assert again.install_state(A).state is InstallState.INSTALL
        assert len(await again.load_leases()) == 2
    finally:
        await again.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / FILE_NAME)
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / FILE_NAME)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        await SqliteStore(tmp_path / FILE_NAME).open()


async def test_every_statement_runs_in_the_worker_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / FILE_NAME, poll_interval=0.01)
    await store.open()
    threads: list[str] = []
    await store._call(
        "trace", store.db.set_trace_callback, lambda _sql: threads.append(current_thread().name)
    )
    try:
        await store.commit_leases([Lease(IPv4Address("10.0.0.5"), A, LeaseState.BOUND, 9.0)], 0)
        await store.set_install_state(A, HostState(InstallState.INSTALLED, 1.0, "x"))
        await store.add_events([Event(1.0, "dhcp", mac=A, message_type="ACK")])
        await store.events(A)
        await store.secret()
        await store.add_token(TokenRecord("ops", "0f" * 32, 1.0))
        await store.add_session(SessionRecord("ab" * 32, "ops", 1.0, 9e9), "0f" * 32)
        await store.session("ab" * 32, 2.0)
        await store.end_session("ab" * 32)
        await store.revoke_token("ops")
        await asyncio.sleep(0.05)  # a few polls of data_version
    finally:
        await store.close()
    assert len(threads) > 8
    assert {name.split("_")[0] for name in threads} == {"pxelab-sqlite"}


def test_event_text_round_trip_ignores_unknown_fields() -> None:
    event = Event(1.5, "tftp", mac=A, ip="10.0.0.5", file="ipxe.efi", bytes_acked=9, size=9)
    assert event_from_text(event_to_text(event), "db") == event
    data = json.loads(event_to_text(event)) | {"future_field": [1, 2]}
    assert event_from_text(json.dumps(data), "db") == event
    with pytest.raises(StoreError, match="db: bad event row"):
        event_from_text("[1]", "db")


def test_state_url_key() -> None:
    assert build_config({}, {}).state_url is None
    url = "postgresql://pxelab@db.lab:5432/pxelab"
    assert build_config({"state_url": url}, {}).state_url == url
    assert build_config({}, {"state_url": "postgresql:///p?host=/run/pg"}).state_url
    with pytest.raises(ConfigError, match=r"state_url.*postgresql://"):
        build_config({"state_url": "mysql://x"}, {})


async def test_a_version_1_database_gains_the_ipv6_lease_table_with_its_since(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / FILE_NAME)
    for statement in SCHEMA[:-3]:  # version 1: everything but leases6 (2), seen (3), sessions...
        db.execute(statement)
    db.execute("ALTER TABLE leases DROP COLUMN since")  # ... and the leases' since (4)
    db.execute("INSERT INTO leases VALUES (167772165, ?, 'bound', 900.0, 'old')", (A,))
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.commit()
    db.close()
    store = SqliteStore(tmp_path / FILE_NAME)
    await store.open()
    try:
        assert await store.load_leases6() == []
        lease = Lease6(IPv6Address("2001:db8::1000"), A, 7, LeaseState.BOUND, 100.0, since=5.0)
        assert await store.commit_leases6([lease], 0) == []
        assert await store.load_leases6() == [lease]  # leases6 gained its since too (4)
        late = Lease6(IPv6Address("2001:db8::1001"), A, 7, LeaseState.BOUND, 100.0, since=4.0)
        assert await store.commit_leases6([late], 6) == [lease]
        columns = [row[1] for row in store.db.execute("PRAGMA table_info(leases6)")]
        assert columns == ["ip", "client", "iaid", "state", "expires", "instance", "since"]
        old = Lease(IPv4Address("10.0.0.5"), A, LeaseState.BOUND, 900.0, since=0.0)
        assert await store.load_leases() == [old]  # an old row was decided "at 0"
        await store.add_token(TokenRecord("ops", "0f" * 32, 1.0))  # ... and sessions (4)
        assert await store.add_session(SessionRecord("ab" * 32, "ops", 1.0, 9e9), "0f" * 32)
        assert await store.session("ab" * 32, 2.0) == SessionRecord("ab" * 32, "ops", 1.0, 9e9)
    finally:
        await store.close()
    version = sqlite3.connect(tmp_path / FILE_NAME).execute("SELECT version FROM schema_version")
    assert version.fetchone()[0] == SCHEMA_VERSION == 4

"""The SQLite-WAL lease store: rows per address, replay into a LeaseTable, a crash mid-run."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pxelab.dhcp.leases import Lease, LeaseState, LeaseTable
from pxelab.dhcp.store import LeaseStore, LeaseStoreError

A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.0.0.{last}")


def durable_table(store: LeaseStore) -> LeaseTable:
    return LeaseTable(
        ip(100), ip(103), server_ip=ip(1), offer_hold=10, leases=store.load(), on_change=store.save
    )


def test_every_change_is_one_row(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.db")
    table = durable_table(store)
    table.offer(A, 0, reserved={})
    table.bind(A, ip(100), 1, 600, reserved={})
    table.bind(B, ip(101), 1, 600, reserved={})
    table.release(B, ip(101), 2)
    offer = table.offer(C, 3, reserved={})
    assert offer is not None
    table.decline(C, offer.ip, 4)
    rows = {lease.ip: lease for lease in store.load()}
    assert rows == {
        ip(100): Lease(ip(100), A, LeaseState.BOUND, 601),
        offer.ip: Lease(offer.ip, C, LeaseState.DECLINED, 604),
    }
    store.close()


def test_a_process_that_dies_without_closing_loses_nothing(tmp_path: Path) -> None:
    """No close(), no checkpoint: a second connection (the restarted daemon) sees every row."""
    path = tmp_path / "leases.db"
    store = LeaseStore(path)
    table = durable_table(store)
    for n, mac in enumerate((A, B, C)):
        offer = table.offer(mac, n, reserved={})
        assert offer is not None and table.bind(mac, offer.ip, n, 600, reserved={})
    assert (tmp_path / "leases.db-wal").stat().st_size > 0  # the rows are in the WAL
    restarted = durable_table(LeaseStore(path))
    held = {mac: restarted.get(mac, 10) for mac in (A, B, C)}
    assert {mac: lease.ip for mac, lease in held.items() if lease} == {
        A: ip(100),
        B: ip(101),
        C: ip(102),
    }
    # The next new client gets the one address nobody holds, never a held one.
    offer = restarted.offer("52:54:00:00:00:0d", 11, reserved={})
    assert offer is not None and offer.ip == ip(103)
    assert restarted.offer("52:54:00:00:00:0e", 11, reserved={}) is None


def test_expired_rows_are_swept_after_a_restart(tmp_path: Path) -> None:
    store = LeaseStore(tmp_path / "leases.db")
    table = durable_table(store)
    table.bind(A, ip(100), 0, 60, reserved={})
    table = durable_table(store)
    assert table.get(A, 30) is not None
    assert [lease.state for lease in table.expire(61)] == [LeaseState.FREE]
    assert store.load() == []


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    LeaseStore(tmp_path / "leases.db").close()
    with sqlite3.connect(tmp_path / "leases.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LeaseStoreError, match=str(bad)):
        LeaseStore(bad)
    store = LeaseStore(tmp_path / "ok.db")
    store._db.execute(  # a row some other tool wrote badly
        "INSERT INTO leases VALUES (?, ?, ?, ?)", (int(ip(100)), A, "lost", 1.0)
    )
    with pytest.raises(LeaseStoreError, match=r"ok\.db: bad lease row"):
        store.load()

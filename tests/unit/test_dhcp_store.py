"""The SQLite-WAL lease store: rows per address, replay into a LeaseTable, a crash mid-run, and
changes refused because another MAC holds the address in the store."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pxelab.dhcp.leases import Grant, Lease, LeaseState, LeaseStore, LeaseTable
from pxelab.dhcp.store import LeaseStoreError, SqliteLeaseStore

A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.0.0.{last}")


class Durable:
    """A LeaseTable whose every change is committed to the store, as the adapter does."""

    def __init__(self, store: LeaseStore, stored: Sequence[Lease]) -> None:
        self.store = store
        self.table = LeaseTable(ip(100), ip(103), server_ip=ip(1), offer_hold=10, leases=stored)

    @classmethod
    async def load(cls, store: LeaseStore) -> Durable:
        return cls(store, await store.load_leases())

    async def commit(self, changes: Sequence[Lease] | Grant | None, now: float) -> list[Lease]:
        if isinstance(changes, Grant):
            changes = changes.changes
        return await self.store.commit_leases(changes or (), now)


async def test_every_change_is_one_row(tmp_path: Path) -> None:
    store = await SqliteLeaseStore.open(tmp_path / "leases.db")
    durable = Durable(store, [])
    table = durable.table
    assert await durable.commit(table.offer(A, 0, reserved={}), 0) == []
    assert await durable.commit(table.bind(A, ip(100), 1, 600, reserved={}), 1) == []
    assert await durable.commit(table.bind(B, ip(101), 1, 600, reserved={}), 1) == []
    assert await durable.commit(table.release(B, ip(101), 2), 2) == []
    offer = table.offer(C, 3, reserved={})
    assert offer is not None
    await durable.commit(offer, 3)
    await durable.commit(table.decline(C, offer.lease.ip, 4), 4)
    rows = {lease.ip: lease for lease in await store.load_leases()}
    assert rows == {
        ip(100): Lease(ip(100), A, LeaseState.BOUND, 601),
        offer.lease.ip: Lease(offer.lease.ip, C, LeaseState.DECLINED, 604),
    }
    await store.wait_closed()


async def test_a_process_that_dies_without_closing_loses_nothing(tmp_path: Path) -> None:
    """No close(), no checkpoint: a second connection (the restarted daemon) sees every row."""
    path = tmp_path / "leases.db"
    durable = await Durable.load(await SqliteLeaseStore.open(path))
    for n, mac in enumerate((A, B, C)):
        offer = durable.table.offer(mac, n, reserved={})
        assert offer is not None
        await durable.commit(offer, n)
        await durable.commit(durable.table.bind(mac, offer.lease.ip, n, 600, reserved={}), n)
    assert (tmp_path / "leases.db-wal").stat().st_size > 0  # the rows are in the WAL
    restarted = (await Durable.load(await SqliteLeaseStore.open(path))).table
    held = {mac: restarted.get(mac, 10) for mac in (A, B, C)}
    assert {mac: lease.ip for mac, lease in held.items() if lease} == {
        A: ip(100),
        B: ip(101),
        C: ip(102),
    }
    # The next new client gets the one address nobody holds, never a held one.
    offer = restarted.offer("52:54:00:00:00:0d", 11, reserved={})
    assert offer is not None and offer.lease.ip == ip(103)
    assert restarted.offer("52:54:00:00:00:0e", 11, reserved={}) is None


async def test_expired_rows_are_swept_after_a_restart(tmp_path: Path) -> None:
    store = await SqliteLeaseStore.open(tmp_path / "leases.db")
    durable = Durable(store, [])
    await durable.commit(durable.table.bind(A, ip(100), 0, 60, reserved={}), 0)
    durable = await Durable.load(store)
    assert durable.table.get(A, 30) is not None
    swept = durable.table.expire(61)
    assert [lease.state for lease in swept] == [LeaseState.FREE]
    assert await durable.commit(swept, 61) == []
    assert await store.load_leases() == []
    await store.wait_closed()


async def test_a_change_on_an_address_another_mac_holds_is_refused(tmp_path: Path) -> None:
    """Another instance sharing the file bound 10.0.0.100 to B: A's bind and release of it are
    refused and B's lease comes back; once B's lease has expired, A may take it."""
    path = tmp_path / "leases.db"
    ours, theirs = await SqliteLeaseStore.open(path), await SqliteLeaseStore.open(path)
    held = Lease(ip(100), B, LeaseState.BOUND, 600)
    assert await theirs.commit_leases([held], 0) == []
    offered = Lease(ip(100), A, LeaseState.OFFERED, 10)
    bound = Lease(ip(100), A, LeaseState.BOUND, 600)
    freed = Lease(ip(100), A, LeaseState.FREE, 5)
    other = Lease(ip(101), A, LeaseState.BOUND, 600)
    assert await ours.commit_leases([offered], 5) == []  # offers are neither kept nor checked
    assert await ours.commit_leases([bound, other, freed], 5) == [held, held]
    assert sorted(await ours.load_leases(), key=lambda lease: lease.ip) == [held, other]
    assert await ours.commit_leases([bound], 600) == []  # B's lease ran out at 600
    assert await theirs.load_leases() == [bound, other]
    await ours.wait_closed()
    await theirs.wait_closed()


async def test_sqlite_work_runs_off_the_event_loop_thread(tmp_path: Path) -> None:
    store = await SqliteLeaseStore.open(tmp_path / "leases.db")
    threads: list[str] = []
    await store._run(lambda: threads.append(threading.current_thread().name))
    assert threads and threads[0] != threading.current_thread().name
    assert threads[0].startswith("pxelab-leases")
    store.close()
    store.close()  # idempotent
    await store.wait_closed()
    with pytest.raises(LeaseStoreError, match=r"leases\.db: the lease database is closed"):
        await store.load_leases()


async def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    await (await SqliteLeaseStore.open(tmp_path / "leases.db")).wait_closed()
    with sqlite3.connect(tmp_path / "leases.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LeaseStoreError, match=str(bad)):
        await SqliteLeaseStore.open(bad)
    store = await SqliteLeaseStore.open(tmp_path / "ok.db")
    with sqlite3.connect(tmp_path / "ok.db") as db:  # a row some other tool wrote badly
        db.execute("INSERT INTO leases VALUES (?, ?, ?, ?)", (int(ip(100)), A, "lost", 1.0))
    with pytest.raises(LeaseStoreError, match=r"ok\.db: bad lease row"):
        await store.load_leases()
    await store.wait_closed()

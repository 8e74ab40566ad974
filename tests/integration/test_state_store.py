"""The StateStore contract, run against both backends: SQLite in a temp dir and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.dhcp6.leases import Lease6
from pxelab.events import Event
from pxelab.hosts.install import UNRECORDED, HostState, InstallState
from pxelab.state import (
    AuditRecord,
    Change,
    SessionRecord,
    StateStore,
    StoreError,
    TokenRecord,
)
from pxelab.testing.postgres import PostgresCluster
from tests.state_backends import Backend

BACKENDS = ["sqlite", "postgres"]
A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.0.0.{last}")


def bound(last: int, mac: str, expires: float = 1000.0) -> Lease:
    return Lease(ip(last), mac, LeaseState.BOUND, expires)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path)
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return Backend("postgres", tmp_path, cluster.create_database(), cluster)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    opened = backend.make("one")
    await opened.open()
    yield opened
    await opened.close()


async def reopened(backend: Backend, instance: str = "two") -> StateStore:
    other = backend.make(instance)
    await other.open()
    return other


# -- leases ---------------------------------------------------------------------------------


async def test_commit_and_load_leases(store: StateStore) -> None:
    assert await store.commit_leases([bound(5, A), bound(6, B)], now=0) == []
    offered = Lease(ip(7), C, LeaseState.OFFERED, 60)
    assert await store.commit_leases([offered], now=0) == []  # offers are not written
    assert sorted(await store.load_leases(), key=lambda lease: lease.ip) == [
        bound(5, A),
        bound(6, B),
    ]


async def test_conflict_returns_the_holder(store: StateStore) -> None:
    await store.commit_leases([bound(5, A)], now=0)
    held = await store.commit_leases([bound(5, B), bound(6, C)], now=10)
    assert held == [bound(5, A)]
    assert {lease.mac for lease in await store.load_leases()} == {A, C}


async def test_declined_address_refuses_other_macs(store: StateStore) -> None:
    declined = Lease(ip(5), A, LeaseState.DECLINED, 600)
    await store.commit_leases([declined], now=0)
    assert await store.commit_leases([bound(5, B)], now=10) == [declined]
    assert await store.commit_leases([bound(5, B)], now=600) == []  # the hold is over


async def test_one_bound_address_per_mac(store: StateStore) -> None:
    await store.commit_leases([bound(5, A)], now=0)
    await store.commit_leases([bound(6, A)], now=1)  # A moved: its old row goes
    assert await store.load_leases() == [bound(6, A)]
    # refused: A keeps its current address (the move is rolled back)
    await store.commit_leases([bound(7, B)], now=1)
    assert await store.commit_leases([bound(7, A)], now=2) == [bound(7, B)]
    assert sorted(lease.ip for lease in await store.load_leases() if lease.mac == A) == [ip(6)]


async def test_free_deletes_only_the_holders_row(store: StateStore) -> None:
    await store.commit_leases([bound(5, A)], now=0)
    assert await store.commit_leases([Lease(ip(5), B, LeaseState.FREE, 1)], now=1) == []
    assert await store.load_leases() == [bound(5, A)]
    await store.commit_leases([Lease(ip(5), A, LeaseState.FREE, 1)], now=1)
    assert await store.load_leases() == []


async def test_a_late_binding_never_undoes_a_newer_one(backend: Backend, store: StateStore) -> None:
    """Instance one decided A -> .5 at 10 but stores it after instance two stored A -> .6,
    decided at 20 (the client gave up on one and asked again): one's write is refused."""
    other = await reopened(backend, "two")
    try:
        newer = Lease(ip(6), A, LeaseState.BOUND, 1020, since=20)
        assert await other.commit_leases([newer], now=20) == []
        late = Lease(ip(5), A, LeaseState.BOUND, 1010, since=10)
        assert await store.commit_leases([late], now=21) == [newer]
        assert await store.load_leases() == [newer]
        # a decision made after it does move A, and the renewal of .6 by either is applied
        moved = Lease(ip(5), A, LeaseState.BOUND, 1030, since=30)
        assert await store.commit_leases([moved], now=30) == []
        assert await other.load_leases() == [moved]
        renewed = Lease(ip(5), A, LeaseState.BOUND, 1040, since=40)
        assert await other.commit_leases([renewed], now=40) == []
        assert await store.load_leases() == [renewed]
    finally:
        await other.close()


async def test_a_free_removes_only_the_record_it_names(store: StateStore) -> None:
    bound_at_10 = Lease(ip(5), A, LeaseState.BOUND, 1010, since=10)
    await store.commit_leases([bound_at_10], now=10)
    # an instance withdraws its offer of .5 made at 5; the client had taken another's, bound at 10
    withdrawn = Lease(ip(5), A, LeaseState.FREE, 11, since=5)
    assert await store.commit_leases([withdrawn], now=11) == []
    # nor when the withdrawing instance lagged and decided its offer after the binding (seen in
    # the two-instance swarm: both offered A the same address, the slower one decided at 15)
    lagged = Lease(ip(5), A, LeaseState.FREE, 16, since=15)
    assert await store.commit_leases([lagged], now=16) == []
    assert await store.load_leases() == [bound_at_10]
    # the RELEASE of the binding made at 10 removes it
    assert await store.commit_leases([Lease(ip(5), A, LeaseState.FREE, 12, since=10)], 12) == []
    assert await store.load_leases() == []


async def test_expiry_lets_another_mac_take_the_address(store: StateStore) -> None:
    await store.commit_leases([bound(5, A, expires=100)], now=0)
    assert await store.commit_leases([bound(5, B, expires=500)], now=99) == [bound(5, A, 100)]
    assert await store.commit_leases([bound(5, B, expires=500)], now=100) == []
    assert await store.load_leases() == [bound(5, B, 500)]


async def test_active_leases_name_the_instance(backend: Backend, store: StateStore) -> None:
    other = await reopened(backend, "two")
    try:
        await store.commit_leases([bound(5, A, expires=100)], now=0)
        await other.commit_leases([bound(6, B, expires=200)], now=0)
        assert await store.active_leases(now=50) == [
            (bound(5, A, 100), "one"),
            (bound(6, B, 200), "two"),
        ]
        assert await other.active_leases(now=150) == [(bound(6, B, 200), "two")]
    finally:
        await other.close()


# -- install states -------------------------------------------------------------------------


async def test_install_states_in_memory_and_persistent(backend: Backend, store: StateStore) -> None:
    assert store.install_state(A) is UNRECORDED
    installed = HostState(InstallState.INSTALLED, 5.0, "10.0.0.5", generation=3)
    assert await store.set_install_state(A.upper(), installed) == installed
    assert store.install_state(A) == installed  # the view, no I/O
    await store.set_install_state(B, HostState(InstallState.INSTALL, 6.0, "cli", 1))
    await store.forget_install_state(B)
    assert store.install_state(B) is UNRECORDED
    await store.close()
    again = await reopened(backend, "one")
    try:
        assert again.install_state(A) == installed
        assert again.install_state(B) is UNRECORDED
    finally:
        await again.close()


async def test_changes_reach_the_listeners(backend: Backend, store: StateStore) -> None:
    """Another instance's write is seen at once (NOTIFY; SQLite polls data_version)."""
    mine: list[Change] = []
    unsubscribe = store.subscribe(mine.append)
    other = await reopened(backend)
    try:
        seen = asyncio.Event()
        remote = Change("install", A, remote=True)  # the other store's change, told by it
        other.subscribe(lambda change: seen.set() if change == remote else None)
        state = HostState(InstallState.INSTALLED, 7.0, "10.0.0.7", 2)
        await store.set_install_state(A, state)
        assert Change("install", A) in mine
        await asyncio.wait_for(seen.wait(), timeout=30)  # at once; the timeout bounds a hang
        assert other.install_state(A) == state
        await store.add_events([Event(1.0, "dhcp", mac=A, message_type="ACK")])
        await store.commit_leases([bound(5, A)], now=0)
        await store.add_token(TokenRecord("ops", "ab" * 32, 1.0))
        assert Change("event", A) in mine
        assert Change("lease", A) in mine
        assert Change("token", "ops") in mine
        unsubscribe()
        await store.forget_install_state(A)
        assert Change("install", A) in mine and len(mine) == 4
    finally:
        await other.close()


# -- events ---------------------------------------------------------------------------------


async def test_events_bounded_ordered_and_durable(backend: Backend, store: StateStore) -> None:
    await store.add_events(
        [
            Event(float(i), "dhcp", mac=A, ip="10.0.0.5", message_type="ACK", address=str(i))
            for i in range(700)
        ]
    )
    await store.add_events([Event(1000.0, "tftp", mac=B, file="ipxe.efi")])
    kept = await store.events(A)
    assert len(kept) == 500
    assert [e.address for e in kept] == [str(i) for i in range(200, 700)]
    assert kept[-1] == Event(699.0, "dhcp", mac=A, ip="10.0.0.5", message_type="ACK", address="699")
    recent = await store.recent_events(3)
    assert [e.detail for e in recent] == ["ACK 698", "ACK 699", "ipxe.efi"]
    await store.close()
    again = await reopened(backend, "one")
    try:
        assert await again.events(B) == [Event(1000.0, "tftp", mac=B, file="ipxe.efi")]
        assert len(await again.events(A)) == 500
    finally:
        await again.close()


# -- audit, tokens, secret ------------------------------------------------------------------


async def test_audit_trail(store: StateStore) -> None:
    records = [
        AuditRecord(float(i), "ops", "10.0.0.9", "reinstall", A, i % 2 == 0, f"n{i}")
        for i in range(5)
    ]
    for record in records:
        await store.audit(record)
    assert await store.audit_records(3) == records[2:]


async def test_tokens(store: StateStore) -> None:
    token = TokenRecord("ops", "0f" * 32, 10.0)
    await store.add_token(token)
    await store.add_token(TokenRecord("ci", "1e" * 32, 11.0))
    with pytest.raises(StoreError, match="ops"):
        await store.add_token(TokenRecord("ops", "22" * 32, 12.0))
    assert await store.tokens() == [TokenRecord("ci", "1e" * 32, 11.0), token]
    assert await store.revoke_token("ci") is True
    assert await store.revoke_token("ci") is False
    assert await store.tokens() == [token]


async def test_one_secret_for_every_instance(backend: Backend, store: StateStore) -> None:
    other = backend.make("two")
    await asyncio.gather(other.open(), asyncio.sleep(0))
    try:
        first, second = await asyncio.gather(store.secret(), other.secret())
        assert len(first) == 32 and first == second
        assert await store.secret() == first
    finally:
        await other.close()


# -- status-page sessions -------------------------------------------------------------------

OPS = TokenRecord("ops", "0f" * 32, 10.0)


def session(
    n: int, token: str = "ops", created: float = 100.0, expires: float = 500.0
) -> SessionRecord:
    return SessionRecord(f"{n:064x}", token, created, expires)


async def test_sessions_are_shared_kept_and_need_their_token(
    backend: Backend, store: StateStore
) -> None:
    await store.add_token(OPS)
    assert await store.add_session(session(1), OPS.digest)
    assert not await store.add_session(session(2), "1e" * 32)  # not that token's digest
    assert not await store.add_session(session(3, token="ci"), OPS.digest)  # no such token
    assert await store.session(session(1).digest, now=200.0) == session(1)
    assert await store.session(session(2).digest, now=200.0) is None
    assert await store.session(session(1).digest, now=500.0) is None  # expired
    await store.close()
    other = await reopened(backend)  # a restart, or another instance
    try:
        assert await other.session(session(1).digest, now=200.0) == session(1)
        assert await other.end_session(session(1).digest)
        assert not await other.end_session(session(1).digest)
        assert await other.session(session(1).digest, now=200.0) is None
    finally:
        await other.close()


async def test_revoking_a_token_ends_its_sessions(store: StateStore) -> None:
    await store.add_token(OPS)
    await store.add_token(TokenRecord("ci", "1e" * 32, 11.0))
    assert await store.add_session(session(1), OPS.digest)
    assert await store.add_session(session(2, token="ci"), "1e" * 32)
    assert await store.revoke_token("ops")
    assert await store.session(session(1).digest, now=200.0) is None
    assert await store.session(session(2).digest, now=200.0) == session(2, token="ci")
    await store.add_token(TokenRecord("ops", "22" * 32, 12.0))  # the same name, a new token
    assert await store.session(session(1).digest, now=200.0) is None  # the old one's stay gone


async def test_expired_and_surplus_sessions_are_purged(
    backend: Backend, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pxelab.state import sessions

    monkeypatch.setattr(sessions, "SESSIONS_KEPT", 3)
    await store.add_token(OPS)
    assert await store.add_session(session(1, created=100.0, expires=103.0), OPS.digest)
    assert await store.add_session(session(2, created=102.0), OPS.digest)
    assert await _count_sessions(backend) == 2
    assert await store.add_session(session(3, created=104.0), OPS.digest)
    assert await _count_sessions(backend) == 2  # 1 expired: gone at the next sign-in
    for n in (4, 5):
        assert await store.add_session(session(n, created=100.0 + n), OPS.digest)
    assert await _count_sessions(backend) == 3  # 2, the oldest beyond 3, went first
    live = [n for n in range(1, 6) if await store.session(session(n).digest, now=120.0)]
    assert live == [3, 4, 5]


async def _count_sessions(backend: Backend) -> int:
    """Rows left in the sessions table (what is purged is gone, not only hidden)."""
    if backend.kind == "sqlite":
        import sqlite3

        from pxelab.state.sqlite import FILE_NAME

        with contextlib.closing(sqlite3.connect(backend.state_dir / FILE_NAME)) as db:
            return int(db.execute("SELECT count(*) FROM sessions").fetchone()[0])
    import asyncpg

    conn = await asyncpg.connect(backend.url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM sessions"))
    finally:
        await conn.close()


async def test_sign_out_and_revocation_reach_the_other_instances(
    backend: Backend, store: StateStore
) -> None:
    """Each store tells its listeners of its own ends; PostgreSQL tells the other instances too
    (NOTIFY); SQLite's other processes rely on the guard's one-second cache."""
    await store.add_token(OPS)
    assert await store.add_session(session(1), OPS.digest)
    mine: list[Change] = []
    store.subscribe(mine.append)
    other = await reopened(backend)
    try:
        theirs: list[Change] = []
        other.subscribe(theirs.append)
        assert await store.end_session(session(1).digest)
        assert await store.revoke_token("ops")
        assert mine == [Change("session", session(1).digest), Change("token", "ops")]
        if backend.kind == "postgres":
            deadline = time.monotonic() + 30  # bounds a hang: the NOTIFY usually takes ms
            while len(theirs) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert theirs == [
                Change("session", session(1).digest, remote=True),
                Change("token", "ops", remote=True),
            ]
    finally:
        await other.close()


# -- boot history across a restart: Timeline -> EventWriter -> store -> Timeline.restore ------


async def test_timeline_history_survives_a_restart(backend: Backend) -> None:
    from pxelab.events import Timeline
    from pxelab.state.writer import EventWriter

    first = await reopened(backend, "one")
    timeline, writer = Timeline(), EventWriter(first, flush_every=0.01)
    timeline.subscribe(writer)
    writer.start()
    timeline.record(
        Event(1.0, "dhcp", mac=A, ip="10.0.0.5", message_type="ACK", address="10.0.0.5")
    )
    timeline.record(Event(2.0, "script", ip="10.0.0.5", path="/boot", template="boot.ipxe.j2"))
    timeline.record(Event(3.0, "tftp", ip="10.9.9.9", file="x"))  # no MAC known: not kept
    await writer.close()
    await first.close()
    assert writer.written == 2

    second = await reopened(backend, "two")
    try:
        restored = Timeline()
        restored.restore(await second.recent_events(1000))
        assert [e.stage for e in restored.events(A)] == ["dhcp", "script"]
        assert restored.events(A)[1].mac == A  # filled in from the IP, as recorded
        assert restored.mac_at("10.0.0.5") == A
    finally:
        await second.close()


class _Flaky:
    """The real store, but the first `fails` calls of add_events raise StoreUnavailable."""

    def __init__(self, store: StateStore, fails: int) -> None:
        self.store, self.fails = store, fails

    async def add_events(self, events: list[Event]) -> None:
        from pxelab.state import StoreUnavailable

        if self.fails:
            self.fails -= 1
            raise StoreUnavailable("database gone (test)")
        await self.store.add_events(events)


async def test_event_writer_keeps_events_while_the_database_is_away(store: StateStore) -> None:
    from typing import cast

    from pxelab.state.writer import EventWriter

    writer = EventWriter(cast(StateStore, _Flaky(store, fails=2)))
    writer(Event(1.0, "dhcp", mac=A, message_type="DISCOVER"))
    await writer.flush()
    writer(Event(2.0, "dhcp", mac=A, message_type="OFFER", address="10.0.0.5"))
    await writer.flush()
    assert writer.written == 0
    await writer.flush()
    assert writer.written == 2
    assert [e.message_type for e in await store.events(A)] == ["DISCOVER", "OFFER"]


# -- DHCPv6 leases ----------------------------------------------------------------------------


def ip6(last: int) -> IPv6Address:
    return IPv6Address(f"2001:db8:77::{last:x}")


def bound6(
    last: int, client: str, iaid: int = 1, expires: float = 1000.0, since: float = 0.0
) -> Lease6:
    return Lease6(ip6(last), client, iaid, LeaseState.BOUND, expires, since)


async def test_ipv6_leases_commit_load_and_refuse(store: StateStore, backend: Backend) -> None:
    assert await store.commit_leases6([bound6(0x1000, A), bound6(0x1001, "duid:0004ab")], 0) == []
    offered = Lease6(IPv6Address("2001:db8:77::1002"), C, 1, LeaseState.OFFERED, 60)
    assert await store.commit_leases6([offered], 0) == []  # offers are not written
    assert await store.commit_leases6([bound6(0x1000, B)], 10) == [bound6(0x1000, A)]
    # the same client with another IA (firmware, then its network stack) takes it over
    assert await store.commit_leases6([bound6(0x1000, A, iaid=2)], 10) == []
    assert await store.commit_leases6([bound6(0x1000, A)], 10) == []
    other = await reopened(backend)
    try:  # another instance (or a restart) reads them back
        assert sorted(await other.load_leases6(), key=lambda lease: lease.ip) == [
            bound6(0x1000, A),
            bound6(0x1001, "duid:0004ab"),
        ]
        free = Lease6(IPv6Address("2001:db8:77::1000"), A, 1, LeaseState.FREE, 20)
        assert await other.commit_leases6([free], 20) == []
        assert await other.commit_leases6([bound6(0x1000, B)], 20) == []  # free again
    finally:
        await other.close()
    assert {lease.client for lease in await store.load_leases6()} == {B, "duid:0004ab"}


async def test_a_late_ipv6_binding_never_undoes_a_newer_one(
    backend: Backend, store: StateStore
) -> None:
    """Instance one decided A/IA 1 -> ::1000 at 10 but stores it after instance two stored
    A/IA 1 -> ::1001, decided at 20: one's write is refused, as for IPv4."""
    other = await reopened(backend, "two")
    try:
        newer = bound6(0x1001, A, since=20)
        assert await other.commit_leases6([newer], 20) == []
        late = bound6(0x1000, A, since=10)
        assert await store.commit_leases6([late], 21) == [newer]
        assert await store.load_leases6() == [newer]
        # another IA of the same client, or another client, is not held back by it
        assert await store.commit_leases6([bound6(0x1002, A, iaid=2, since=10)], 21) == []
        # a decision made after it moves the IA (its other binding goes), and renewals apply
        moved = bound6(0x1000, A, expires=1030, since=30)
        assert await store.commit_leases6([moved], 30) == []
        assert sorted((x.ip, x.iaid) for x in await other.load_leases6()) == [
            (ip6(0x1000), 1),
            (ip6(0x1002), 2),
        ]
        renewed = bound6(0x1000, A, expires=1040, since=40)
        assert await other.commit_leases6([renewed], 40) == []
        assert renewed in await store.load_leases6()
    finally:
        await other.close()


async def test_an_ipv6_binding_refused_for_its_address_keeps_the_ias_old_one(
    store: StateStore,
) -> None:
    """The IA's other binding is dropped only when the new one is written (as one change)."""
    mine, theirs = bound6(0x1000, A, since=1), bound6(0x1001, B, since=1)
    assert await store.commit_leases6([mine, theirs], 1) == []
    assert await store.commit_leases6([bound6(0x1001, A, since=2)], 2) == [theirs]
    assert sorted(await store.load_leases6(), key=lambda lease: lease.ip) == [mine, theirs]


async def test_an_ipv6_free_removes_only_the_record_it_names(store: StateStore) -> None:
    bound_at_10 = bound6(0x1000, A, since=10)
    assert await store.commit_leases6([bound_at_10], 10) == []
    # an instance frees its record of ::1000 decided at 5 (an expiry it saw, a move it made)
    withdrawn = Lease6(ip6(0x1000), A, 1, LeaseState.FREE, 11, since=5)
    assert await store.commit_leases6([withdrawn], 11) == []
    lagged = Lease6(ip6(0x1000), A, 1, LeaseState.FREE, 16, since=15)  # an offer decided later
    assert await store.commit_leases6([lagged], 16) == []
    # nor does a FREE of another IA of the client remove it
    other_ia = Lease6(ip6(0x1000), A, 2, LeaseState.FREE, 11, since=10)
    assert await store.commit_leases6([other_ia], 11) == []
    assert await store.load_leases6() == [bound_at_10]
    # the RELEASE of the binding made at 10 removes it
    released = Lease6(ip6(0x1000), A, 1, LeaseState.FREE, 12, since=10)
    assert await store.commit_leases6([released], 12) == []
    assert await store.load_leases6() == []


async def test_active_ipv6_leases_name_the_instance(backend: Backend, store: StateStore) -> None:
    other = await reopened(backend, "two")
    try:
        declined = Lease6(ip6(0x2), "duid:0004ab", 9, LeaseState.DECLINED, 300, since=0)
        await store.commit_leases6([bound6(0x1000, A, expires=100), declined], 0)
        await other.commit_leases6([bound6(0xFFF, B, expires=200)], 0)
        assert await store.active_leases6(now=50) == [  # in address order, not text order
            (declined, "one"),
            (bound6(0xFFF, B, expires=200), "two"),
            (bound6(0x1000, A, expires=100), "one"),
        ]
        assert await other.active_leases6(now=250) == [(declined, "one")]
    finally:
        await other.close()


async def test_ipv6_lease_changes_are_told_to_listeners(store: StateStore) -> None:
    heard: list[Change] = []
    store.subscribe(heard.append)
    assert await store.commit_leases6([bound6(0x1000, A), bound6(0x1001, B)], 0) == []
    assert await store.commit_leases6([bound6(0x1000, C)], 1) == [bound6(0x1000, A)]
    assert heard == [Change("lease6", A), Change("lease6", B)]  # the refused one is not


# -- machines seen that nothing serves ----------------------------------------------------------


async def test_seen_machines_are_remembered_and_forgotten(
    store: StateStore, backend: Backend
) -> None:
    from pxelab.state import SeenRecord

    await store.note_seen([SeenRecord(A, "x86_64", "uefi", "", 10.0, 10.0)])
    await store.note_seen([SeenRecord(B, "", "", "10.0.0.9", 11.0, 11.0)])
    # seen again: first seen kept, last seen and what is known updated, unknowns ("") keep theirs
    await store.note_seen([SeenRecord(A, "", "uefi-http", "10.0.0.5", 20.0, 25.0)])
    other = await reopened(backend)
    try:
        assert await other.seen() == [
            SeenRecord(A, "x86_64", "uefi-http", "10.0.0.5", 10.0, 25.0),
            SeenRecord(B, "", "", "10.0.0.9", 11.0, 11.0),
        ]
    finally:
        await other.close()
    assert await store.forget_seen(A)
    assert not await store.forget_seen(A)
    assert [r.mac for r in await store.seen()] == [B]


async def test_a_version_1_database_is_migrated_to_the_current_one(backend: Backend) -> None:
    """Version 1 -> 2 (leases6) -> 3 (seen) -> 4 (the leases' and leases6's since, sessions), on
    both backends."""
    from pxelab.state import SCHEMA_VERSION, SeenRecord

    first = backend.make("one")
    await first.open()
    await first.close()
    drops = (
        "DROP TABLE sessions",
        "DROP TABLE seen",
        "DROP TABLE leases6",
        *(("DROP FUNCTION pxelab_commit_lease6",) if backend.kind == "postgres" else ()),
        "ALTER TABLE leases DROP COLUMN since",
        f"INSERT INTO leases VALUES ({int(ip(5))}, '{A}', 'bound', 900, 'old')",
        "UPDATE schema_version SET version = 1",
    )
    run_sql(backend, drops)
    migrated = backend.make("two")
    await migrated.open()
    try:
        await migrated.note_seen([SeenRecord(C, "aarch64", "uefi", "", 1.0, 2.0)])
        assert [r.mac for r in await migrated.seen()] == [C]
        assert await migrated.load_leases6() == []
        assert await migrated.load_leases() == [bound(5, A, 900)]  # since 0: decided "at 0"
        assert await migrated.commit_leases([bound(6, A, 950)], now=1) == []  # the new function
        assert await migrated.load_leases() == [bound(6, A, 950)]
        # leases6, made by the 1 -> 2 step as version 2 had it, gained its since in 3 -> 4
        assert await migrated.commit_leases6([bound6(0x1001, A, since=20)], 20) == []
        assert await migrated.commit_leases6([bound6(0x1000, A, since=10)], 21) == [
            bound6(0x1001, A, since=20)
        ]
        assert await migrated.load_leases6() == [bound6(0x1001, A, since=20)]
        await migrated.add_token(OPS)  # 3 -> 4 also made the sessions table
        assert await migrated.add_session(session(1), OPS.digest)
        assert await migrated.session(session(1).digest, now=200.0) == session(1)
        assert SCHEMA_VERSION == 4
    finally:
        await migrated.close()


async def test_a_version_3_database_keeps_its_ipv6_leases(backend: Backend) -> None:
    """3 -> 4 gives the stored IPv6 leases a since of 0 (decided "at 0") and the new rules."""
    first = backend.make("one")
    await first.open()
    await first.close()
    run_sql(
        backend,
        (
            "DROP TABLE sessions",
            *(("DROP FUNCTION pxelab_commit_lease6",) if backend.kind == "postgres" else ()),
            "ALTER TABLE leases DROP COLUMN since",
            "ALTER TABLE leases6 DROP COLUMN since",
            f"INSERT INTO leases6 VALUES ('{ip6(0x1000)}', '{A}', 1, 'bound', 900, 'old')",
            "UPDATE schema_version SET version = 3",
        ),
    )
    migrated = backend.make("two")
    await migrated.open()
    try:
        old = bound6(0x1000, A, expires=900)
        assert await migrated.load_leases6() == [old]
        assert await migrated.active_leases6(now=0) == [(old, "old")]
        assert await migrated.commit_leases6([bound6(0x1001, A, since=5)], 5) == []
        assert await migrated.load_leases6() == [bound6(0x1001, A, since=5)]  # the IA moved
    finally:
        await migrated.close()


def run_sql(backend: Backend, statements: Sequence[str]) -> None:
    """Run statements on the backend's database, outside pxelab (to make an older schema)."""
    for statement in statements:
        if backend.kind == "sqlite":
            import sqlite3

            from pxelab.state.sqlite import FILE_NAME

            with contextlib.closing(sqlite3.connect(backend.state_dir / FILE_NAME)) as db:
                db.execute(statement)
                db.commit()
        else:
            assert backend.cluster is not None
            backend.cluster.psql(statement, urlsplit(backend.url).path.lstrip("/"))

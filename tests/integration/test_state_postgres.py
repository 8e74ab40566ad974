"""PostgreSQL-only behaviour: clear errors at open, a restart under a running store, two instances
racing for the same addresses, notifications after a reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import urlsplit

import pytest

from pxelab.app.config import Config
from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.dhcp6.leases import Lease6
from pxelab.hosts.install import HostState, InstallState
from pxelab.state import SCHEMA_VERSION, Change, StoreError, StoreUnavailable
from pxelab.state.base import public_url
from pxelab.state.open import open_store
from pxelab.state.postgres import PostgresStore
from pxelab.testing.postgres import PASSWORD_ROLE, PostgresCluster


def dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def mac(n: int) -> str:
    return f"52:54:00:00:{n // 256:02x}:{n % 256:02x}"


async def test_a_newer_schema_is_refused(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    store = PostgresStore(url)
    await store.open()
    await store.close()
    pg_cluster.psql(f"UPDATE schema_version SET version = {SCHEMA_VERSION + 1}", dbname(url))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        await PostgresStore(url).open()


async def test_no_server_is_a_quick_clear_error() -> None:
    with tempfile.TemporaryDirectory() as empty:
        start = time.monotonic()
        with pytest.raises(StoreError, match="cannot connect: cannot reach the server"):
            await PostgresStore(f"postgresql://postgres@/pxelab?host={empty}").open()
        assert time.monotonic() - start < 3


async def test_unknown_role_and_database_are_clear_errors(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.url("nosuchdb")
    with pytest.raises(StoreError, match='cannot connect: database "nosuchdb" does not exist'):
        await PostgresStore(url).open()
    with pytest.raises(StoreError, match='authentication failed: role "intruder" does not exist'):
        await PostgresStore(url.replace("postgres@", "intruder:secret@")).open()


async def test_a_wrong_password_is_a_clear_error(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database().replace("postgres@", f"{PASSWORD_ROLE}:wrong@")
    pg_cluster.add_password_role("right", owns=dbname(url))
    with pytest.raises(StoreError, match="authentication failed: password authentication") as err:
        await PostgresStore(url).open()
    assert "wrong" not in str(err.value) and f"{PASSWORD_ROLE}:***@" in str(err.value)
    store = PostgresStore(url.replace(":wrong@", ":right@"))
    await store.open()  # the right one works (and creates the schema in its database)
    await store.close()


async def test_open_store_chooses_postgres_by_state_url(pg_cluster: PostgresCluster) -> None:
    store = open_store(Config(state_url=pg_cluster.create_database()), instance="lab-1")
    assert isinstance(store, PostgresStore) and store.instance == "lab-1"
    await store.open()
    try:
        assert len(await store.secret()) == 32
    finally:
        await store.close()


def test_passwords_stay_out_of_messages() -> None:
    assert public_url("postgresql://px:hunter2@db:5432/p") == "postgresql://px:***@db:5432/p"
    assert public_url("postgresql:///p?host=/run") == "postgresql:///p?host=/run"


async def test_restart_under_a_running_store(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    store, other = PostgresStore(url, reconnect_interval=0.2), PostgresStore(url)
    await store.open()
    await other.open()
    try:
        lease = Lease(IPv4Address("10.0.0.5"), mac(1), LeaseState.BOUND, 1000.0)
        await store.commit_leases([lease], now=0)
        await asyncio.to_thread(pg_cluster.restart)
        start = time.monotonic()
        try:
            leases = await store.load_leases()  # the pool reconnects at once ...
        except StoreUnavailable:
            leases = [lease]  # ... or the call fails cleanly
        assert time.monotonic() - start < store.timeout + 1
        assert leases == [lease]
        assert await store.load_leases() == [lease]
        # the LISTEN connection came back too: another instance's change still arrives
        seen = asyncio.Event()
        store.subscribe(lambda change: seen.set() if change.kind == "install" else None)
        deadline = time.monotonic() + 10
        state = HostState(InstallState.INSTALLED, 1.0, "x", 1)
        while not seen.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(StoreUnavailable):  # its pool reconnects on the next call
                await other.set_install_state(mac(2), state)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(seen.wait(), 0.5)
        assert seen.is_set() and store.install_state(mac(2)) == state
    finally:
        await store.close()
        await other.close()


async def test_a_call_while_the_database_is_down_fails_cleanly(pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    store = PostgresStore(url, timeout=2.0)
    await store.open()
    try:
        await asyncio.to_thread(pg_cluster.stop)
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="cannot read leases"):
            await store.load_leases()
        assert time.monotonic() - start < 3
        assert store.install_state(mac(1)).state is InstallState.INSTALL  # the view still answers
    finally:
        await asyncio.to_thread(pg_cluster.start)
    try:
        assert await store.load_leases() == []
    finally:
        await store.close()


async def test_two_instances_never_bind_one_address_twice(pg_cluster: PostgresCluster) -> None:
    """200 MACs over 100 addresses from two stores at once: the database keeps one MAC per address."""
    url = pg_cluster.create_database()
    one, two = PostgresStore(url, instance="one"), PostgresStore(url, instance="two")
    await one.open()
    await two.open()
    rng = random.Random(15)
    refused = 0

    async def client(store: PostgresStore, n: int) -> None:
        nonlocal refused
        for _ in range(3):  # each MAC tries a few addresses, some moving between them
            lease = Lease(
                IPv4Address(f"10.0.1.{rng.randrange(100)}"), mac(n), LeaseState.BOUND, 1e9
            )
            held = await store.commit_leases([lease], now=0)
            assert all(h.ip == lease.ip and h.mac != lease.mac for h in held)
            refused += len(held)

    try:
        await asyncio.gather(*(client(one if n % 2 else two, n) for n in range(200)))
        rows = pg_cluster.psql(
            "SELECT count(*), count(DISTINCT ip), count(DISTINCT mac) FROM leases",
            dbname(url),
        )
        count, ips, macs = map(int, rows.split("|"))
        assert count == ips == macs  # one row per address, one bound address per MAC
        assert 0 < count <= 100 and refused > 0
        instances = {instance for _, instance in await one.active_leases(0)}
        assert instances == {"one", "two"}
    finally:
        await one.close()
        await two.close()


async def test_one_mac_bound_from_two_instances_at_once(pg_cluster: PostgresCluster) -> None:
    """Both instances bind the same MAC to different addresses at once: one binding survives."""
    url = pg_cluster.create_database()
    one, two = PostgresStore(url, instance="one"), PostgresStore(url, instance="two")
    await one.open()
    await two.open()
    try:
        for _ in range(5):
            results = await asyncio.gather(
                *(
                    store.commit_leases(
                        [Lease(IPv4Address(f"10.0.{k}.{n}"), mac(n), LeaseState.BOUND, 1e9)], now=0
                    )
                    for n in range(50)
                    for k, store in ((2, one), (3, two))
                )
            )
            assert all(held == [] for held in results)  # nobody else held those addresses
            rows = pg_cluster.psql(
                "SELECT count(*), count(DISTINCT mac) FROM leases WHERE state = 'bound'",
                dbname(url),
            )
            assert rows == "50|50"
    finally:
        await one.close()
        await two.close()


async def test_one_ipv6_ia_bound_from_two_instances_at_once(pg_cluster: PostgresCluster) -> None:
    """Both instances bind the same client's IA to different addresses at once, the later
    decision sometimes stored first: one binding per IA survives, and never the older one."""
    url = pg_cluster.create_database()
    one, two = PostgresStore(url, instance="one"), PostgresStore(url, instance="two")
    await one.open()
    await two.open()
    try:
        for round_ in range(5):
            bindings: dict[tuple[int, PostgresStore], Lease6] = {}
            for n in range(50):  # one and two take turns in deciding last
                for k, store in ((2, one), (3, two)):
                    since = 10 * round_ + (1 + (n + round_ + k) % 2)
                    address = IPv6Address(f"2001:db8:{k}::{n:x}")
                    bindings[n, store] = Lease6(address, mac(n), 1, LeaseState.BOUND, 1e9, since)
            await asyncio.gather(
                *(store.commit_leases6([lease], now=0) for (_, store), lease in bindings.items())
            )
            rows = pg_cluster.psql(
                "SELECT count(*), count(DISTINCT client) FROM leases6 WHERE state = 'bound'",
                dbname(url),
            )
            assert rows == "50|50"
            held = {lease.client: lease for lease in await one.load_leases6()}
            for n in range(50):  # the binding decided later is the one kept
                later = max(bindings[n, one], bindings[n, two], key=lambda lease: lease.since)
                assert held[mac(n)] == later
    finally:
        await one.close()
        await two.close()


async def test_another_instances_lease_arrives_with_its_notification(
    pg_cluster: PostgresCluster,
) -> None:
    """A lease one instance writes reaches the other's listeners with the lease itself (the
    DHCP side learns it without reading the table), marked remote; its own changes are not."""
    url = pg_cluster.create_database()
    one, two = PostgresStore(url, instance="one"), PostgresStore(url, instance="two")
    await one.open()
    await two.open()
    try:
        heard: list[Change] = []
        arrived = asyncio.Event()

        def listen(change: Change) -> None:
            heard.append(change)
            if change.kind == "lease":
                arrived.set()

        two.subscribe(listen)
        lease = Lease(IPv4Address("10.0.0.9"), mac(9), LeaseState.BOUND, 5000.0)
        assert await one.commit_leases([lease], now=0) == []
        await asyncio.wait_for(arrived.wait(), 2)
        assert heard == [Change("lease", mac(9), remote=True, lease=lease)]
        mine: list[Change] = []
        two.subscribe(mine.append)
        other = Lease(IPv4Address("10.0.0.10"), mac(10), LeaseState.BOUND, 5000.0)
        assert await two.commit_leases([other], now=0) == []
        assert mine == [Change("lease", mac(10))]  # its own: not remote, told at once
    finally:
        await one.close()
        await two.close()

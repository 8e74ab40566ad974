"""The lease table: offer hold, bind, release, decline, expiry, reservations, replay, all on fake `now`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

from pxelab.dhcp.leases import Lease, LeaseState, LeaseTable

A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
NONE: dict[IPv4Address, str] = {}


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.0.0.{last}")


def table(
    first: int = 100,
    last: int = 102,
    *,
    leases: Iterable[Lease] = (),
    on_change: Callable[[Lease], None] | None = None,
) -> LeaseTable:
    return LeaseTable(
        ip(first), ip(last), server_ip=ip(1), offer_hold=10, leases=leases, on_change=on_change
    )


def test_offer_holds_an_address_briefly_then_frees_it() -> None:
    leases = table()
    offer = leases.offer(A, 0, reserved=NONE)
    assert offer == Lease(ip(100), A, LeaseState.OFFERED, 10)
    assert leases.offer(B, 5, reserved=NONE) == Lease(ip(101), B, LeaseState.OFFERED, 15)
    # After the hold, A's address goes to the next client... once the cursor wraps.
    assert leases.holder(ip(100), 10) is None
    assert leases.offer(C, 11, reserved=NONE) is not None


def test_same_client_gets_the_same_offer_and_the_hold_is_extended() -> None:
    leases = table()
    first = leases.offer(A, 0, reserved=NONE)
    again = leases.offer(A, 8, reserved=NONE)
    assert first is not None and again is not None
    assert again.ip == first.ip and again.expires == 18


def test_bind_lasts_for_lease_time_and_expiry_frees() -> None:
    leases = table()
    leases.offer(A, 0, reserved=NONE)
    bound = leases.bind(A, ip(100), 1, 3600, reserved=NONE)
    assert bound == Lease(ip(100), A, LeaseState.BOUND, 3601)
    assert leases.get(A, 3600) == bound
    assert leases.offer(A, 100, reserved=NONE) == bound  # rediscover keeps the binding
    assert leases.bind(B, ip(100), 3000, 3600, reserved=NONE) is None
    assert leases.get(A, 3601) is None
    assert leases.bind(B, ip(100), 3601, 3600, reserved=NONE) is not None


def test_expired_client_gets_its_old_address_back_if_still_free() -> None:
    leases = table()
    leases.bind(A, ip(101), 0, 60, reserved=NONE)
    offer = leases.offer(A, 1000, reserved=NONE)
    assert offer is not None and offer.ip == ip(101)


def test_requested_address_is_honoured_when_free() -> None:
    leases = table()
    offer = leases.offer(A, 0, reserved=NONE, requested=ip(102))
    assert offer is not None and offer.ip == ip(102)
    leases.bind(B, ip(101), 0, 60, reserved=NONE)
    offer = leases.offer(C, 0, reserved=NONE, requested=ip(101))
    assert offer is not None and offer.ip == ip(100)
    outside = leases.offer("52:54:00:00:00:0d", 0, reserved=NONE, requested=ip(50))
    assert outside is None  # pool exhausted; 10.0.0.50 is outside the pool


def test_pool_exhaustion() -> None:
    leases = table(100, 101)
    assert leases.offer(A, 0, reserved=NONE) is not None
    assert leases.offer(B, 0, reserved=NONE) is not None
    assert leases.offer(C, 0, reserved=NONE) is None
    assert leases.offer(C, 10, reserved=NONE) is not None  # the holds ran out


def test_pool_skips_server_and_addresses_reserved_for_others() -> None:
    leases = LeaseTable(ip(1), ip(4), server_ip=ip(1))
    reserved = {ip(2): B, ip(3): C}
    offer = leases.offer(A, 0, reserved=reserved)
    assert offer is not None and offer.ip == ip(4)
    assert leases.offer("52:54:00:00:00:0d", 0, reserved=reserved) is None
    assert leases.bind(A, ip(2), 0, 60, reserved=reserved) is None
    assert leases.bind(A, ip(1), 0, 60, reserved=reserved) is None


def test_reservation_always_wins() -> None:
    leases = table()
    reserved = {ip(50): A}
    leases.bind(B, ip(50), 0, 3600, reserved=NONE, reservation=ip(50))  # a stale binding
    offer = leases.offer(A, 1, reserved=reserved, reservation=ip(50))
    assert offer == Lease(ip(50), A, LeaseState.OFFERED, 11)
    assert leases.get(B, 1) is None
    # A reserved host may not take any other address.
    assert leases.bind(A, ip(100), 2, 60, reserved=reserved, reservation=ip(50)) is None
    assert leases.bind(A, ip(50), 2, 60, reserved=reserved, reservation=ip(50)) is not None


def test_moving_to_another_address_drops_the_old_one() -> None:
    changes: list[Lease] = []
    leases = table(on_change=changes.append)
    leases.bind(A, ip(100), 0, 60, reserved=NONE)
    leases.bind(A, ip(102), 1, 60, reserved=NONE)
    assert leases.holder(ip(100), 2) is None
    assert changes[-2:] == [
        Lease(ip(100), A, LeaseState.FREE, 60),
        Lease(ip(102), A, LeaseState.BOUND, 61),
    ]


def test_release_frees_only_the_holders_address() -> None:
    leases = table()
    leases.bind(A, ip(100), 0, 60, reserved=NONE)
    assert leases.release(B, ip(100), 1) is None
    assert leases.release(A, ip(100), 1) == Lease(ip(100), A, LeaseState.FREE, 1)
    assert leases.get(A, 1) is None and leases.holder(ip(100), 1) is None


def test_decline_keeps_the_address_from_everyone() -> None:
    leases = LeaseTable(ip(100), ip(100), decline_hold=600)
    leases.offer(A, 0, reserved=NONE)
    assert leases.decline(B, ip(100), 1) is None
    declined = leases.decline(A, ip(100), 1)
    assert declined == Lease(ip(100), A, LeaseState.DECLINED, 601)
    assert leases.get(A, 2) is None
    assert leases.offer(A, 2, reserved=NONE) is None
    assert leases.offer(B, 2, reserved=NONE) is None
    assert leases.offer(B, 601, reserved=NONE) is not None


def test_expire_collects_and_reports_dead_records() -> None:
    changes: list[Lease] = []
    leases = table(on_change=changes.append)
    leases.offer(A, 0, reserved=NONE)
    leases.bind(B, ip(101), 0, 100, reserved=NONE)
    assert leases.expire(50) == [Lease(ip(100), A, LeaseState.FREE, 10)]
    assert changes[-1] == Lease(ip(100), A, LeaseState.FREE, 10)
    assert [lease.mac for lease in leases.leases()] == [B]
    assert leases.expire(200) == [Lease(ip(101), B, LeaseState.FREE, 100)]
    assert leases.leases() == []


def test_journal_replay_rebuilds_the_table() -> None:
    journal: list[Lease] = []
    leases = table(on_change=journal.append)
    leases.bind(A, ip(100), 0, 600, reserved=NONE)
    leases.offer(B, 1, reserved=NONE)
    leases.bind(B, ip(101), 2, 600, reserved=NONE)
    leases.offer(C, 3, reserved=NONE)
    leases.release(A, ip(100), 4)
    leases.bind(C, ip(100), 5, 600, reserved=NONE)
    replayed = table(leases=journal)
    assert sorted(replayed.leases(), key=lambda x: x.ip) == sorted(
        leases.leases(), key=lambda x: x.ip
    )
    assert replayed.get(C, 6) == leases.get(C, 6)
    assert replayed.get(A, 6) is None

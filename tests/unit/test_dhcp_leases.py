"""The lease table: offer hold, bind, release, decline, expiry, reservations, replay, learn, and
the changes each call returns, all on fake `now`."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

from pxelab.dhcp.leases import Grant, Lease, LeaseState, LeaseTable, refusal, removes
from pxelab.dhcp6.leases import Lease6

A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
NONE: dict[IPv4Address, str] = {}


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.0.0.{last}")


def table(first: int = 100, last: int = 102, *, leases: Iterable[Lease] = ()) -> LeaseTable:
    return LeaseTable(ip(first), ip(last), server_ip=ip(1), offer_hold=10, leases=leases)


def lease_of(grant: Grant | None) -> Lease | None:
    return grant.lease if grant is not None else None


def test_offer_holds_an_address_briefly_then_frees_it() -> None:
    leases = table()
    offer = leases.offer(A, 0, reserved=NONE)
    assert offer == Grant(
        Lease(ip(100), A, LeaseState.OFFERED, 10), (Lease(ip(100), A, LeaseState.OFFERED, 10),)
    )
    offered = Lease(ip(101), B, LeaseState.OFFERED, 15, since=5)  # decided at 5
    assert lease_of(leases.offer(B, 5, reserved=NONE)) == offered
    # After the hold, A's address goes to the next client... once the cursor wraps.
    assert leases.holder(ip(100), 10) is None
    assert leases.offer(C, 11, reserved=NONE) is not None


def test_same_client_gets_the_same_offer_and_the_hold_is_extended() -> None:
    leases = table()
    first = leases.offer(A, 0, reserved=NONE)
    again = leases.offer(A, 8, reserved=NONE)
    assert first is not None and again is not None
    assert again.lease.ip == first.lease.ip and again.lease.expires == 18
    assert again.changes == (again.lease,)


def test_bind_lasts_for_lease_time_and_expiry_frees() -> None:
    leases = table()
    leases.offer(A, 0, reserved=NONE)
    bound = lease_of(leases.bind(A, ip(100), 1, 3600, reserved=NONE))
    assert bound == Lease(ip(100), A, LeaseState.BOUND, 3601, since=1)
    assert leases.get(A, 3600) == bound
    # Rediscover keeps the binding, and changes nothing.
    assert leases.offer(A, 100, reserved=NONE) == Grant(bound, ())
    assert leases.bind(B, ip(100), 3000, 3600, reserved=NONE) is None
    assert leases.get(A, 3601) is None
    assert leases.bind(B, ip(100), 3601, 3600, reserved=NONE) is not None


def test_expired_client_gets_its_old_address_back_if_still_free() -> None:
    leases = table()
    leases.bind(A, ip(101), 0, 60, reserved=NONE)
    offer = leases.offer(A, 1000, reserved=NONE)
    assert offer is not None and offer.lease.ip == ip(101)


def test_requested_address_is_honoured_when_free() -> None:
    leases = table()
    offer = leases.offer(A, 0, reserved=NONE, requested=ip(102))
    assert offer is not None and offer.lease.ip == ip(102)
    leases.bind(B, ip(101), 0, 60, reserved=NONE)
    offer = leases.offer(C, 0, reserved=NONE, requested=ip(101))
    assert offer is not None and offer.lease.ip == ip(100)
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
    assert offer is not None and offer.lease.ip == ip(4)
    assert leases.offer("52:54:00:00:00:0d", 0, reserved=reserved) is None
    assert leases.bind(A, ip(2), 0, 60, reserved=reserved) is None
    assert leases.bind(A, ip(1), 0, 60, reserved=reserved) is None


def test_reservation_always_wins() -> None:
    leases = table()
    reserved = {ip(50): A}
    leases.bind(B, ip(50), 0, 3600, reserved=NONE, reservation=ip(50))  # a stale binding
    offer = lease_of(leases.offer(A, 1, reserved=reserved, reservation=ip(50)))
    assert offer == Lease(ip(50), A, LeaseState.OFFERED, 11, since=1)
    assert leases.get(B, 1) is None
    # A reserved host may not take any other address.
    assert leases.bind(A, ip(100), 2, 60, reserved=reserved, reservation=ip(50)) is None
    assert leases.bind(A, ip(50), 2, 60, reserved=reserved, reservation=ip(50)) is not None


def test_moving_to_another_address_drops_the_old_one() -> None:
    leases = table()
    leases.bind(A, ip(100), 0, 60, reserved=NONE)
    moved = leases.bind(A, ip(102), 1, 60, reserved=NONE)
    assert leases.holder(ip(100), 2) is None
    assert moved is not None and moved.changes == (
        Lease(ip(100), A, LeaseState.FREE, 60, since=0),  # frees the record decided at 0
        Lease(ip(102), A, LeaseState.BOUND, 61, since=1),
    )


def test_release_frees_only_the_holders_address() -> None:
    leases = table()
    leases.bind(A, ip(100), 0, 60, reserved=NONE)
    assert leases.release(B, ip(100), 1) == []
    assert leases.release(A, ip(100), 1) == [Lease(ip(100), A, LeaseState.FREE, 1)]
    assert leases.get(A, 1) is None and leases.holder(ip(100), 1) is None


def test_decline_keeps_the_address_from_everyone() -> None:
    leases = LeaseTable(ip(100), ip(100), decline_hold=600)
    leases.offer(A, 0, reserved=NONE)
    assert leases.decline(B, ip(100), 1) == []
    declined = leases.decline(A, ip(100), 1)
    assert declined == [Lease(ip(100), A, LeaseState.DECLINED, 601, since=1)]
    assert leases.get(A, 2) is None
    assert leases.offer(A, 2, reserved=NONE) is None
    assert leases.offer(B, 2, reserved=NONE) is None
    assert leases.offer(B, 601, reserved=NONE) is not None


def test_expire_collects_and_reports_dead_records() -> None:
    leases = table()
    leases.offer(A, 0, reserved=NONE)
    leases.bind(B, ip(101), 0, 100, reserved=NONE)
    assert leases.expire(50) == [Lease(ip(100), A, LeaseState.FREE, 10)]
    assert [lease.mac for lease in leases.leases()] == [B]
    assert leases.expire(200) == [Lease(ip(101), B, LeaseState.FREE, 100)]
    assert leases.leases() == []


def grant_changes(grant: Grant | None) -> list[Lease]:
    assert grant is not None
    return list(grant.changes)


def test_journal_replay_rebuilds_the_table() -> None:
    """The returned changes, replayed in order, give the same table (what the store relies on)."""
    leases = table()
    journal = grant_changes(leases.bind(A, ip(100), 0, 600, reserved=NONE))
    journal += grant_changes(leases.offer(B, 1, reserved=NONE))
    journal += grant_changes(leases.bind(B, ip(101), 2, 600, reserved=NONE))
    journal += grant_changes(leases.offer(C, 3, reserved=NONE))
    journal += leases.release(A, ip(100), 4)
    journal += grant_changes(leases.bind(C, ip(100), 5, 600, reserved=NONE))
    replayed = table(leases=journal)
    assert sorted(replayed.leases(), key=lambda x: x.ip) == sorted(
        leases.leases(), key=lambda x: x.ip
    )
    assert replayed.get(C, 6) == leases.get(C, 6)
    assert replayed.get(A, 6) is None


# -- following another instance: its FREEs, and its late bindings ------------------------------


def test_removes_only_the_record_it_names() -> None:
    bound = Lease(ip(100), A, LeaseState.BOUND, 900, since=10)
    assert removes(Lease(ip(100), A, LeaseState.FREE, 50, since=10), bound)
    # a FREE naming a record decided at 12 (an offer, never stored) is not this binding, even
    # though it came later: a lagging instance can decide an offer after another bound the client
    assert not removes(Lease(ip(100), A, LeaseState.FREE, 50, since=12), bound)
    assert not removes(Lease(ip(100), A, LeaseState.FREE, 50, since=9), bound)  # bound anew
    assert not removes(Lease(ip(100), B, LeaseState.FREE, 50, since=10), bound)  # another MAC
    assert not removes(Lease(ip(101), A, LeaseState.FREE, 50, since=10), bound)  # elsewhere
    assert not removes(Lease(ip(100), A, LeaseState.BOUND, 50, since=10), bound)  # no FREE


def test_learn_applies_a_free_of_another_instance_to_the_record_it_names() -> None:
    leases = table()
    theirs = Lease(ip(100), A, LeaseState.BOUND, 900, since=10)
    leases.learn(theirs)
    offered = leases.offer(B, 11, reserved=NONE)
    assert offered is not None and offered.lease.ip == ip(101)  # not A's .100
    assert leases.holder(ip(100), 12) == theirs
    # A release elsewhere at 20 names the record decided at 10: this table forgets it too.
    free = Lease(ip(100), A, LeaseState.FREE, 20, since=10)
    assert leases.differs(free, 20)
    assert leases.learn(free) == [theirs]
    assert leases.holder(ip(100), 20) is None and leases.get(A, 20) is None
    assert not leases.differs(free, 20)  # nothing left to remove
    assert lease_of(leases.offer(C, 21, reserved=NONE, requested=ip(100))) == Lease(
        ip(100), C, LeaseState.OFFERED, 31, since=21
    )


def test_learn_keeps_a_record_a_free_does_not_name() -> None:
    leases = table()
    mine = lease_of(leases.bind(A, ip(100), 30, 600, reserved=NONE))
    # A FREE of an older record of A on .100 (the other instance's expiry, told late) and a
    # FREE of another MAC's record on it leave this instance's newer binding alone.
    for stale in (
        Lease(ip(100), A, LeaseState.FREE, 25, since=10),
        Lease(ip(100), B, LeaseState.FREE, 25, since=40),
        Lease(ip(101), A, LeaseState.FREE, 25, since=40),
    ):
        assert not leases.differs(stale, 31)
        assert leases.learn(stale) == []
    assert leases.holder(ip(100), 31) == mine and leases.get(A, 31) == mine


def test_learn_never_moves_a_mac_back_to_an_older_binding() -> None:
    leases = table()
    mine = lease_of(leases.bind(A, ip(100), 20, 600, reserved=NONE))
    older = Lease(ip(101), A, LeaseState.BOUND, 610, since=10)  # told late of what it replaced
    assert not leases.differs(older, 21)
    assert leases.learn(older) == []
    assert leases.get(A, 21) == mine and leases.holder(ip(101), 21) is None
    newer = Lease(ip(102), A, LeaseState.BOUND, 630, since=30)
    assert leases.differs(newer, 31)
    assert leases.learn(newer) == [mine]
    assert leases.get(A, 31) == newer and leases.holder(ip(100), 31) is None
    declined = Lease(ip(101), A, LeaseState.DECLINED, 640, since=5)  # not a binding: learned
    assert leases.differs(declined, 31)
    assert leases.learn(declined) == []
    assert leases.holder(ip(101), 31) == declined and leases.get(A, 31) == newer


def test_refusal_says_why_a_reply_is_dropped_for_either_family() -> None:
    late = Lease(ip(100), A, LeaseState.BOUND, 900, since=10)
    newer = Lease(ip(101), A, LeaseState.BOUND, 950, since=20)
    other = Lease(ip(100), B, LeaseState.BOUND, 990, since=5)
    assert refusal([late], [newer]) == (
        f"{A} has a newer binding, {ip(101)}, in the lease store (the client moved on from "
        f"{ip(100)})"
    )
    assert refusal([late], [other]) == f"{ip(100)} is taken in the lease store"
    assert refusal([late], []) is None
    assert refusal([Lease(ip(102), C, LeaseState.BOUND, 900, since=10)], [other]) is None
    late6 = Lease6(IPv6Address("2001:db8::10"), "duid:01", 1, LeaseState.BOUND, 900, since=10)
    newer6 = Lease6(IPv6Address("2001:db8::11"), "duid:01", 1, LeaseState.BOUND, 950, since=20)
    assert refusal([late6], [newer6]) == (
        "duid:01 IA 1 has a newer binding, 2001:db8::11, in the lease store "
        "(the client moved on from 2001:db8::10)"
    )
    another_client = Lease6(late6.ip, "duid:02", 1, LeaseState.BOUND, 900, since=5)
    assert refusal([late6], [another_client]) == "2001:db8::10 is taken in the lease store"

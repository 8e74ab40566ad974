"""The DHCPv6 lease table's `since`: each record says when it was decided, each FREE names the
record it removes, and what another instance granted is learned unless this table bound the IA
anew after it."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from pxelab.dhcp.leases import LeaseState
from pxelab.dhcp.leases import supersedes as leases_supersedes
from pxelab.dhcp6.leases import Lease6, Lease6Table, supersedes

A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"
START, END = IPv6Address("2001:db8::1000"), IPv6Address("2001:db8::10ff")


def ip(n: int) -> IPv6Address:
    return IPv6Address(int(START) + n)


def test_every_record_carries_when_it_was_decided() -> None:
    table = Lease6Table(START, END, decline_hold=600)
    assert table.hold(A, 1, ip(0), 5, 60, bound=False) == [
        Lease6(ip(0), A, 1, LeaseState.OFFERED, 65, since=5)
    ]
    assert table.hold(A, 1, ip(0), 7, 3600, bound=True) == [
        Lease6(ip(0), A, 1, LeaseState.BOUND, 3607, since=7)
    ]
    # the release at 9 frees the record decided at 7 (and only it)
    assert table.release(A, 1, ip(0), 9) == [Lease6(ip(0), A, 1, LeaseState.FREE, 9, since=7)]
    table.hold(B, 2, ip(1), 10, 3600, bound=True)
    assert table.decline(B, 2, ip(1), 11) == [
        Lease6(ip(1), B, 2, LeaseState.DECLINED, 611, since=11)
    ]
    assert table.expire(700) == [Lease6(ip(1), B, 2, LeaseState.FREE, 611, since=11)]


def test_moving_an_ia_frees_its_old_record_by_its_since() -> None:
    table = Lease6Table(START, END)
    table.hold(A, 1, ip(0), 3, 3600, bound=True)
    assert table.hold(A, 1, ip(5), 8, 3600, bound=True) == [
        Lease6(ip(0), A, 1, LeaseState.FREE, 3603, since=3),
        Lease6(ip(5), A, 1, LeaseState.BOUND, 3608, since=8),
    ]


@pytest.mark.parametrize(
    ("held", "change", "stale"),
    [
        ((0, A, 1, 20), (1, A, 1, 10), True),  # the same IA bound elsewhere, later
        ((0, A, 1, 10), (1, A, 1, 20), False),  # ... earlier: the change is the newer
        ((0, A, 1, 20), (0, A, 1, 10), False),  # the same address: a renewal, applied
        ((0, A, 2, 20), (1, A, 1, 10), False),  # another IA of the client
        ((0, B, 1, 20), (1, A, 1, 10), False),  # another client
    ],
)
def test_supersedes(
    held: tuple[int, str, int, float], change: tuple[int, str, int, float], stale: bool
) -> None:
    def bound(n: int, client: str, iaid: int, since: float) -> Lease6:
        return Lease6(ip(n), client, iaid, LeaseState.BOUND, 9999, since)

    assert supersedes(bound(*held), bound(*change)) is stale
    declined = Lease6(ip(1), A, 1, LeaseState.DECLINED, 9999, since=10)
    assert not supersedes(bound(*held), declined)  # only bindings are ordered


def test_learning_never_moves_an_ia_back_to_an_older_binding() -> None:
    table = Lease6Table(START, END)
    mine = table.hold(A, 1, ip(0), 20, 3600, bound=True)[-1]
    older = Lease6(ip(1), A, 1, LeaseState.BOUND, 3610, since=10)
    assert not table.differs(older, 21)  # told late of a binding this table replaced
    newer = Lease6(ip(2), A, 1, LeaseState.BOUND, 3630, since=30)
    assert table.differs(newer, 31)
    table.learn(newer)
    assert table.get(A, 1, 31) == newer and table.holder(ip(0), 31) is None
    assert not table.differs(newer, 31)  # known now
    renewed = Lease6(ip(2), A, 1, LeaseState.BOUND, 3640, since=40)
    assert table.differs(renewed, 41)
    assert not table.differs(Lease6(ip(3), B, 1, LeaseState.FREE, 50, since=0), 41)
    assert mine.since == 20


def test_the_search_for_a_free_address_starts_where_it_is_told() -> None:
    """Instances sharing a store start at different points of the pool (`first`, wrapping)."""
    table = Lease6Table(START, END, first=0x100 + 5)  # the pool has 0x100 addresses
    assert table.choose(A, 1, 0, {}, None) == ip(5)
    table.hold(A, 1, ip(5), 0, 60, bound=True)
    assert table.choose(B, 1, 0, {}, None) == ip(6)


def test_one_ordering_rule_for_both_families() -> None:
    assert supersedes is leases_supersedes
    assert Lease6(ip(0), A, 7, LeaseState.BOUND, 1).owner == (A, 7)


def test_learning_a_free_removes_only_the_record_it_names() -> None:
    table = Lease6Table(START, END)
    theirs = Lease6(ip(0), A, 1, LeaseState.BOUND, 3610, since=10)
    table.learn(theirs)
    assert table.choose(B, 1, 11, {}, None) == ip(1)  # ip(0) is held
    mine = table.hold(B, 1, ip(2), 12, 3600, bound=True)[-1]
    # Frees that name no record here change nothing: another IA, an older decision, elsewhere.
    for stale in (
        Lease6(ip(0), A, 2, LeaseState.FREE, 20, since=10),
        Lease6(ip(0), A, 1, LeaseState.FREE, 20, since=9),
        Lease6(ip(2), B, 1, LeaseState.FREE, 20, since=11),
        Lease6(ip(3), A, 1, LeaseState.FREE, 20, since=10),
    ):
        assert not table.differs(stale, 20)
        table.learn(stale)
    assert table.holder(ip(0), 20) == theirs and table.holder(ip(2), 20) == mine
    # The other instance's RELEASE of the record decided at 10: this table forgets it too.
    free = Lease6(ip(0), A, 1, LeaseState.FREE, 20, since=10)
    assert table.differs(free, 20)
    table.learn(free)
    assert table.holder(ip(0), 20) is None and table.get(A, 1, 20) is None
    assert not table.differs(free, 20)
    assert table.choose(B, 2, 21, {}, None, hints=[ip(0)]) == ip(0)


def test_learn_itself_never_moves_an_ia_back() -> None:
    table = Lease6Table(START, END)
    mine = table.hold(A, 1, ip(0), 20, 3600, bound=True)[-1]
    table.learn(Lease6(ip(1), A, 1, LeaseState.BOUND, 3610, since=10))  # a refusal's holder too
    assert table.get(A, 1, 21) == mine and table.holder(ip(1), 21) is None

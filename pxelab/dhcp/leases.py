"""In-memory DHCP lease table: offer, bind, release, decline and expiry, all driven by `now`.

Every mutating method returns the records it changed; the adapter hands them to a `LeaseStore`
and replays the stored ones through the `leases` argument at start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol


class LeaseState(StrEnum):
    """What a lease record says about its address."""

    OFFERED = "offered"
    BOUND = "bound"
    DECLINED = "declined"
    FREE = "free"


@dataclass(frozen=True)
class Lease:
    """One address and who holds it until when."""

    ip: IPv4Address
    """The leased address."""
    mac: str
    """The holder's hardware address, lowercase "aa:bb:cc:dd:ee:ff"."""
    state: LeaseState
    """OFFERED (held briefly), BOUND (acknowledged), DECLINED (in use elsewhere), FREE (released)."""
    expires: float
    """When it stops holding the address, on the same clock as `now`."""
    since: float = 0.0
    """When the decision that wrote it was made (the request's `now`). For FREE: the `since` of
    the record it removes. Instances sharing a store order their decisions by it, so a decision
    that reaches the store late never undoes a newer one (see `supersedes`)."""

    def active(self, now: float) -> bool:
        """Whether it still keeps the address from others at `now`."""
        return self.state is not LeaseState.FREE and now < self.expires

    @property
    def owner(self) -> str:
        """Who holds it, as the ordering rules compare holders: the MAC."""
        return self.mac

    @property
    def who(self) -> str:
        """The holder, for a log line."""
        return self.mac


@dataclass(frozen=True)
class Grant:
    """What `offer` or `bind` gave, and every record the call changed."""

    lease: Lease
    """The client's lease after the call (OFFERED or BOUND)."""
    changes: tuple[Lease, ...]
    """The changed records in order (a MAC that moves frees its old address first); empty when
    nothing changed (a bound address offered again)."""


class Decision(Protocol):
    """A lease record of either family (`Lease`, `pxelab.dhcp6.leases.Lease6`), as the rules
    that order the decisions of instances sharing a store see it."""

    @property
    def ip(self) -> IPv4Address | IPv6Address:
        """The address."""
        ...

    @property
    def owner(self) -> object:
        """Who holds it: the MAC (IPv4), the client and IA (IPv6)."""
        ...

    @property
    def state(self) -> LeaseState:
        """What the record says about the address."""
        ...

    @property
    def since(self) -> float:
        """When it was decided (for a FREE: the `since` of the record it removes)."""
        ...

    @property
    def who(self) -> str:
        """The holder, for a log line."""
        ...


def supersedes(held: Decision, change: Decision) -> bool:
    """Whether `held`, a binding in the store, makes `change` stale: both bind the same holder
    (MAC, or client and IA), to different addresses, and `held` was decided later. A store
    refuses such a change (the client has moved on: the late reply must not be sent, nor its
    binding replace the newer one)."""
    return (
        change.state is LeaseState.BOUND
        and held.state is LeaseState.BOUND
        and held.owner == change.owner
        and held.ip != change.ip
        and held.since > change.since
    )


def removes(free: Decision, held: Decision) -> bool:
    """Whether the FREE `free` removes `held`: it names that very record (same address, holder
    and `since`). A store deletes only such a row; a table that follows the store's changes
    forgets only such a record. An offer is never stored, so withdrawing one removes nothing
    there, however late the instance that withdraws it decided it (a lagging instance's offer
    can be decided after another instance bound the client to that same address)."""
    return (
        free.state is LeaseState.FREE
        and held.ip == free.ip
        and held.owner == free.owner
        and held.since == free.since
    )


def refusal(changes: Sequence[Decision], refused: Sequence[Decision]) -> str | None:
    """Why the store refused one of a decision's `changes` (its reply must not be sent), given
    the leases it refused them with; None when none of them refused these changes."""
    for change in changes:
        for held in refused:
            if supersedes(held, change):
                return (
                    f"{held.who} has a newer binding, {held.ip}, in the lease store "
                    f"(the client moved on from {change.ip})"
                )
            if held.ip == change.ip and held.owner != change.owner:
                return f"{change.ip} is taken in the lease store"
    return None


def learns(change: Decision, on_ip: Decision | None, mine: Decision | None) -> bool:
    """Whether a table takes in `change`, which the store applied for another instance, when it
    holds `on_ip` on the change's address and `mine` for the change's holder: a FREE when it
    removes `on_ip` (`removes`); anything else unless `mine` supersedes it (a notification that
    arrives after this instance bound the client anew never moves it back)."""
    if change.state is LeaseState.FREE:
        return on_ip is not None and removes(change, on_ip)
    return mine is None or not supersedes(mine, change)


class LeaseStore(Protocol):
    """Where leases outlive the process: the SQLite file in `state_dir`, or the shared state store."""

    async def load_leases(self) -> list[Lease]:
        """Every stored lease (expired ones too: the table forgets them on its next sweep)."""
        ...

    async def commit_leases(self, changes: Sequence[Lease], now: float) -> list[Lease]:
        """Apply changes, each atomically. Returns, for each change refused, the lease that refused
        it: another MAC's live lease on its address, or a newer binding of its MAC elsewhere
        (`supersedes`); [] when all were applied. A FREE removes only the record it names (same
        address, MAC and `since`: `removes`), never one another instance wrote."""
        ...


class LeaseTable:
    """Leases of one pool, at most one live address per MAC; reservations always win."""

    def __init__(
        self,
        pool_start: IPv4Address,
        pool_end: IPv4Address,
        *,
        server_ip: IPv4Address | None = None,
        offer_hold: float = 60.0,
        decline_hold: float = 600.0,
        leases: Iterable[Lease] = (),
        first: int = 0,
    ) -> None:
        """`first`: the pool offset where the search for a free address starts (instances that
        share one store start apart, so their offers seldom collide)."""
        if pool_end < pool_start:
            raise ValueError(f"pool end {pool_end} is before pool start {pool_start}")
        self.pool_start = pool_start
        self.pool_end = pool_end
        self.server_ip = server_ip
        self.offer_hold = offer_hold
        self.decline_hold = decline_hold
        self._by_ip: dict[IPv4Address, Lease] = {}
        self._by_mac: dict[str, IPv4Address] = {}
        self._cursor = first % (int(pool_end) - int(pool_start) + 1)
        for lease in leases:
            self._apply(lease)

    # -- queries ------------------------------------------------------------------------------

    def get(self, mac: str, now: float) -> Lease | None:
        """The live OFFERED or BOUND lease of `mac`, if any."""
        ip = self._by_mac.get(mac)
        lease = self._by_ip.get(ip) if ip is not None else None
        return lease if lease is not None and lease.active(now) else None

    def holder(self, ip: IPv4Address, now: float) -> Lease | None:
        """The live lease on `ip` (of any state but FREE), if any."""
        lease = self._by_ip.get(ip)
        return lease if lease is not None and lease.active(now) else None

    def leases(self) -> list[Lease]:
        """Every record kept, live or expired but not yet collected by `expire`."""
        return list(self._by_ip.values())

    def in_pool(self, ip: IPv4Address) -> bool:
        """Whether `ip` lies in the dynamic range."""
        return self.pool_start <= ip <= self.pool_end

    # -- transitions (each returns the records it changed) -------------------------------------

    def offer(
        self,
        mac: str,
        now: float,
        *,
        reserved: Mapping[IPv4Address, str],
        reservation: IPv4Address | None = None,
        requested: IPv4Address | None = None,
    ) -> Grant | None:
        """Hold an address for `mac` for `offer_hold` seconds; None when none can be given.

        Order: its reservation (only that), its current lease, the address it asked for, then the
        first free pool address. `reserved` maps every reserved address to its MAC.
        """
        candidate = self._choose(mac, now, reserved, reservation, requested)
        if candidate is None:
            return None
        current = self.holder(candidate, now)
        mine = current if current is not None and current.mac == mac else None
        if mine is not None and mine.state is LeaseState.BOUND:
            return Grant(mine, ())  # re-offering a bound address keeps the binding as it is
        if mine is not None and mine.state is LeaseState.OFFERED:
            lease = replace(mine, expires=max(mine.expires, now + self.offer_hold), since=now)
        else:
            lease = Lease(candidate, mac, LeaseState.OFFERED, now + self.offer_hold, now)
        return Grant(lease, tuple(self._apply(lease)))

    def bind(
        self,
        mac: str,
        ip: IPv4Address,
        now: float,
        lease_time: float,
        *,
        reserved: Mapping[IPv4Address, str],
        reservation: IPv4Address | None = None,
    ) -> Grant | None:
        """Bind `ip` to `mac` for `lease_time` seconds (the ACK); None when it may not (NAK)."""
        if not self._allowed(mac, ip, now, reserved, reservation):
            return None
        lease = Lease(ip, mac, LeaseState.BOUND, now + lease_time, now)
        return Grant(lease, tuple(self._apply(lease)))

    def release(self, mac: str, ip: IPv4Address, now: float) -> list[Lease]:
        """Free `ip` if `mac` holds it (RELEASE, or a REQUEST that chose another server);
        [] when it does not."""
        lease = self._by_ip.get(ip)
        if lease is None or lease.mac != mac or lease.state is LeaseState.DECLINED:
            return []
        return self._apply(_freeing(lease, now))

    def decline(self, mac: str, ip: IPv4Address, now: float) -> list[Lease]:
        """Keep `ip` away from everyone for `decline_hold` seconds: `mac` found it in use;
        [] when `mac` does not hold it."""
        lease = self._by_ip.get(ip)
        if lease is None or lease.mac != mac or not lease.active(now):
            return []
        return self._apply(Lease(ip, mac, LeaseState.DECLINED, now + self.decline_hold, now))

    def expire(self, now: float) -> list[Lease]:
        """Forget records whose time is up and return them as FREE (addresses are free anyway)."""
        gone = [lease for lease in self._by_ip.values() if not lease.active(now)]
        freed = []
        for lease in gone:
            freed += self._apply(_freeing(lease, lease.expires))
        return freed

    def learn(self, lease: Lease) -> list[Lease]:
        """Take in a lease change the store applied for another instance: a lease replaces what
        the table had for its address and its MAC, a FREE removes the record it names; neither
        when `learns` says no. Returns the records it displaced, which are not to be written
        back: the store already holds `lease`."""
        on_ip = self._by_ip.get(lease.ip)
        if not learns(lease, on_ip, self._of(lease.mac)):
            return []
        displaced = []
        if on_ip is not None and on_ip != lease:
            displaced.append(on_ip)
        previous = self._by_mac.get(lease.mac)
        if (
            previous is not None
            and previous != lease.ip
            and lease.state not in (LeaseState.DECLINED, LeaseState.FREE)
        ):
            moved = self._by_ip.get(previous)
            if moved is not None:
                displaced.append(moved)
        self._apply(lease)
        return displaced

    def differs(self, lease: Lease, now: float) -> bool:
        """Whether the store's change `lease` is news to this table: a FREE of a record it
        holds, or a live lease it does not hold, and either one it `learns`."""
        on_ip = self._by_ip.get(lease.ip)
        if lease.state is not LeaseState.FREE and (not lease.active(now) or on_ip == lease):
            return False
        return learns(lease, on_ip, self._of(lease.mac))

    # -- internals ----------------------------------------------------------------------------

    def _choose(
        self,
        mac: str,
        now: float,
        reserved: Mapping[IPv4Address, str],
        reservation: IPv4Address | None,
        requested: IPv4Address | None,
    ) -> IPv4Address | None:
        """The address to offer `mac`, following the order documented on `offer`."""
        if reservation is not None:
            return (
                reservation if self._allowed(mac, reservation, now, reserved, reservation) else None
            )
        for choice in (self._by_mac.get(mac), requested):
            if choice is not None and self._allowed(mac, choice, now, reserved, None):
                return choice
        return self._find_free(now, reserved)

    def _allowed(
        self,
        mac: str,
        ip: IPv4Address,
        now: float,
        reserved: Mapping[IPv4Address, str],
        reservation: IPv4Address | None,
    ) -> bool:
        """Whether `mac` may hold `ip` now (a reservation evicts whoever else is on it)."""
        if ip == self.server_ip:
            return False
        if reservation is not None:
            return ip == reservation
        owner = reserved.get(ip)
        if owner is not None and owner != mac:
            return False
        if owner is None and not self.in_pool(ip):
            return False
        holder = self.holder(ip, now)
        return holder is None or (holder.mac == mac and holder.state is not LeaseState.DECLINED)

    def _find_free(self, now: float, reserved: Mapping[IPv4Address, str]) -> IPv4Address | None:
        """The next allocatable pool address after the cursor, wrapping once."""
        start, size = int(self.pool_start), int(self.pool_end) - int(self.pool_start) + 1
        for step in range(size):
            offset = (self._cursor + step) % size
            ip = IPv4Address(start + offset)
            if ip in reserved or ip == self.server_ip or self.holder(ip, now) is not None:
                continue
            self._cursor = (offset + 1) % size
            return ip
        return None

    def _of(self, mac: str) -> Lease | None:
        """The record of `mac`'s (non-declined) address, live or not."""
        ip = self._by_mac.get(mac)
        return self._by_ip.get(ip) if ip is not None else None

    def _apply(self, lease: Lease) -> list[Lease]:
        """Store one record and return the changes: FREE removes its address; anything else
        replaces what was on its address and, when the MAC moves, frees the MAC's old address."""
        changes: list[Lease] = []
        old = self._by_ip.pop(lease.ip, None)
        if old is not None and self._by_mac.get(old.mac) == old.ip:
            del self._by_mac[old.mac]
        if lease.state is not LeaseState.FREE:
            if lease.state is not LeaseState.DECLINED:
                previous = self._by_mac.get(lease.mac)
                if previous is not None and previous != lease.ip:
                    moved = self._by_ip.pop(previous, None)
                    if moved is not None:
                        changes.append(_freeing(moved, moved.expires))
                self._by_mac[lease.mac] = lease.ip
            self._by_ip[lease.ip] = lease
        changes.append(lease)
        return changes


def _freeing(lease: Lease, expires: float) -> Lease:
    """The FREE record that removes `lease` (and only it: it carries its `since`)."""
    return Lease(lease.ip, lease.mac, LeaseState.FREE, expires, lease.since)

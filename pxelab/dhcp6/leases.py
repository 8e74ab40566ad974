"""In-memory DHCPv6 lease table (IA_NA addresses): offer, bind, release, decline and expiry, all
driven by `now`. Every mutating method returns the records it changed, for the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv6Address

from pxelab.dhcp.leases import LeaseState, learns
from pxelab.dhcp.leases import supersedes as supersedes  # one rule for both families


@dataclass(frozen=True)
class Lease6:
    """One IPv6 address, the client and IA holding it, until when."""

    ip: IPv6Address
    """The leased address."""
    client: str
    """The holder: its MAC ("aa:bb:...") when known, else "duid:<hex>"."""
    iaid: int
    """The IA_NA of the client the address belongs to."""
    state: LeaseState
    """OFFERED (advertised), BOUND (replied to a REQUEST), DECLINED, FREE (released)."""
    expires: float
    """When it stops holding the address, on the same clock as `now`."""
    since: float = 0.0
    """When the decision that wrote it was made (the request's `now`). For FREE: the `since` of
    the record it removes. Instances sharing a store order their decisions by it (`supersedes`),
    as for IPv4 leases."""

    def active(self, now: float) -> bool:
        """Whether it still keeps the address from others at `now`."""
        return self.state is not LeaseState.FREE and now < self.expires

    @property
    def owner(self) -> tuple[str, int]:
        """Who holds it, as the ordering rules (`pxelab.dhcp.leases.supersedes`) compare
        holders: the client and IA."""
        return (self.client, self.iaid)

    @property
    def who(self) -> str:
        """The holder, for a log line."""
        return f"{self.client} IA {self.iaid}"


class Lease6Table:
    """Leases of one IPv6 pool, at most one live address per (client, IAID)."""

    def __init__(
        self,
        pool_start: IPv6Address,
        pool_end: IPv6Address,
        *,
        offer_hold: float = 60.0,
        decline_hold: float = 600.0,
        leases: Iterable[Lease6] = (),
        first: int = 0,
    ) -> None:
        """`first`: the pool offset where the search for a free address starts (instances that
        share a store start at different points, so they seldom offer the same address)."""
        if pool_end < pool_start:
            raise ValueError(f"pool end {pool_end} is before pool start {pool_start}")
        self.pool_start = pool_start
        self.pool_end = pool_end
        self.offer_hold = offer_hold
        self.decline_hold = decline_hold
        self._by_ip: dict[IPv6Address, Lease6] = {}
        self._by_ia: dict[tuple[str, int], IPv6Address] = {}
        self._cursor = first % (int(pool_end) - int(pool_start) + 1)
        for lease in leases:
            self._apply(lease)

    def get(self, client: str, iaid: int, now: float) -> Lease6 | None:
        """The live lease of one IA, if any."""
        ip = self._by_ia.get((client, iaid))
        lease = self._by_ip.get(ip) if ip is not None else None
        return lease if lease is not None and lease.active(now) else None

    def holder(self, ip: IPv6Address, now: float) -> Lease6 | None:
        """The live lease on `ip`, if any."""
        lease = self._by_ip.get(ip)
        return lease if lease is not None and lease.active(now) else None

    def leases(self) -> list[Lease6]:
        """Every record kept."""
        return list(self._by_ip.values())

    def in_pool(self, ip: IPv6Address) -> bool:
        """Whether `ip` lies in the dynamic range."""
        return self.pool_start <= ip <= self.pool_end

    def allowed(
        self,
        client: str,
        iaid: int,
        ip: IPv6Address,
        now: float,
        reserved: Mapping[IPv6Address, str],
        reservation: IPv6Address | None,
    ) -> bool:
        """Whether this IA may hold `ip` now (a reservation takes precedence over the pool)."""
        if reservation is not None:
            return ip == reservation
        owner = reserved.get(ip)
        if owner is not None and owner != client:
            return False
        if owner is None and not self.in_pool(ip):
            return False
        held = self.holder(ip, now)
        return held is None or (
            (held.client, held.iaid) == (client, iaid) and held.state is not LeaseState.DECLINED
        )

    def choose(
        self,
        client: str,
        iaid: int,
        now: float,
        reserved: Mapping[IPv6Address, str],
        reservation: IPv6Address | None,
        hints: Iterable[IPv6Address] = (),
    ) -> IPv6Address | None:
        """The address for an IA: its reservation only, else its lease, a hint, a free one."""
        if reservation is not None:
            ok = self.allowed(client, iaid, reservation, now, reserved, reservation)
            return reservation if ok else None
        for ip in (self._by_ia.get((client, iaid)), *hints):
            if ip is not None and self.allowed(client, iaid, ip, now, reserved, None):
                return ip
        return self._find_free(now, reserved)

    def hold(
        self, client: str, iaid: int, ip: IPv6Address, now: float, seconds: float, bound: bool
    ) -> list[Lease6]:
        """Record `ip` for the IA: OFFERED (advertised) or BOUND, for `seconds`. A bound lease
        is not downgraded by a later advertise."""
        current = self.holder(ip, now)
        if (
            not bound
            and current is not None
            and current.state is LeaseState.BOUND
            and (current.client, current.iaid) == (client, iaid)
        ):
            return []
        state = LeaseState.BOUND if bound else LeaseState.OFFERED
        return self._apply(Lease6(ip, client, iaid, state, now + seconds, now))

    def release(self, client: str, iaid: int, ip: IPv6Address, now: float) -> list[Lease6]:
        """Free `ip` if this IA holds it; [] when it does not."""
        lease = self._by_ip.get(ip)
        if lease is None or (lease.client, lease.iaid) != (client, iaid):
            return []
        if lease.state is LeaseState.DECLINED:
            return []
        return self._apply(_freeing(lease, now))

    def decline(self, client: str, iaid: int, ip: IPv6Address, now: float) -> list[Lease6]:
        """Keep `ip` from everyone for `decline_hold` seconds (the client found it in use)."""
        lease = self._by_ip.get(ip)
        if lease is None or (lease.client, lease.iaid) != (client, iaid) or not lease.active(now):
            return []
        declined = Lease6(ip, client, iaid, LeaseState.DECLINED, now + self.decline_hold, now)
        return self._apply(declined)

    def expire(self, now: float) -> list[Lease6]:
        """Forget records whose time is up and return them as FREE."""
        gone = [lease for lease in self._by_ip.values() if not lease.active(now)]
        freed = []
        for old in gone:
            freed += self._apply(_freeing(old, old.expires))
        return freed

    def learn(self, lease: Lease6) -> None:
        """Take in a lease change the store applied for another instance: a lease replaces what
        the table had for its address and its IA, a FREE removes the record it names; neither
        when `pxelab.dhcp.leases.learns` says no. Nothing is to be written back."""
        if learns(lease, self._by_ip.get(lease.ip), self._of(lease.client, lease.iaid)):
            self._apply(lease)

    def differs(self, lease: Lease6, now: float) -> bool:
        """Whether the store's change `lease` is news to this table: a FREE of a record it
        holds, or a live lease it does not hold, and either one it `learns`."""
        on_ip = self._by_ip.get(lease.ip)
        if lease.state is not LeaseState.FREE and (not lease.active(now) or on_ip == lease):
            return False
        return learns(lease, on_ip, self._of(lease.client, lease.iaid))

    def _of(self, client: str, iaid: int) -> Lease6 | None:
        """The record of the IA's (non-declined) address, live or not."""
        ip = self._by_ia.get((client, iaid))
        return self._by_ip.get(ip) if ip is not None else None

    def _find_free(self, now: float, reserved: Mapping[IPv6Address, str]) -> IPv6Address | None:
        start, size = int(self.pool_start), int(self.pool_end) - int(self.pool_start) + 1
        for step in range(min(size, 1 << 16)):
            offset = (self._cursor + step) % size
            ip = IPv6Address(start + offset)
            if ip in reserved or self.holder(ip, now) is not None:
                continue
            self._cursor = (offset + 1) % size
            return ip
        return None

    def _apply(self, lease: Lease6) -> list[Lease6]:
        """Store one record; FREE removes it, a moving IA frees its old address."""
        changes: list[Lease6] = []
        old = self._by_ip.pop(lease.ip, None)
        if old is not None and self._by_ia.get((old.client, old.iaid)) == old.ip:
            del self._by_ia[(old.client, old.iaid)]
        if lease.state is not LeaseState.FREE:
            if lease.state is not LeaseState.DECLINED:
                key = (lease.client, lease.iaid)
                previous = self._by_ia.get(key)
                if previous is not None and previous != lease.ip:
                    moved = self._by_ip.pop(previous, None)
                    if moved is not None:
                        changes.append(_freeing(moved, moved.expires))
                self._by_ia[key] = lease.ip
            self._by_ip[lease.ip] = lease
        changes.append(lease)
        return changes


def _freeing(lease: Lease6, expires: float) -> Lease6:
    """The FREE record that removes `lease` (and only it: it carries its `since`)."""
    return Lease6(lease.ip, lease.client, lease.iaid, LeaseState.FREE, expires, lease.since)

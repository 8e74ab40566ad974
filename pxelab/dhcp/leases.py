"""In-memory DHCP lease table: offer, bind, release, decline and expiry, all driven by `now`.

Persistence seam: journal each `on_change` record; replay them through the `leases` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from ipaddress import IPv4Address


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

    def active(self, now: float) -> bool:
        """Whether it still keeps the address from others at `now`."""
        return self.state is not LeaseState.FREE and now < self.expires


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
        on_change: Callable[[Lease], None] | None = None,
    ) -> None:
        if pool_end < pool_start:
            raise ValueError(f"pool end {pool_end} is before pool start {pool_start}")
        self.pool_start = pool_start
        self.pool_end = pool_end
        self.server_ip = server_ip
        self.offer_hold = offer_hold
        self.decline_hold = decline_hold
        self._on_change: Callable[[Lease], None] | None = None
        self._by_ip: dict[IPv4Address, Lease] = {}
        self._by_mac: dict[str, IPv4Address] = {}
        self._cursor = 0
        for lease in leases:
            self._store(lease)
        self._on_change = on_change

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

    # -- transitions --------------------------------------------------------------------------

    def offer(
        self,
        mac: str,
        now: float,
        *,
        reserved: Mapping[IPv4Address, str],
        reservation: IPv4Address | None = None,
        requested: IPv4Address | None = None,
    ) -> Lease | None:
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
            return mine  # re-offering a bound address keeps the binding as it is
        if mine is not None and mine.state is LeaseState.OFFERED:
            lease = replace(mine, expires=max(mine.expires, now + self.offer_hold))
        else:
            lease = Lease(candidate, mac, LeaseState.OFFERED, now + self.offer_hold)
        self._commit(lease)
        return lease

    def bind(
        self,
        mac: str,
        ip: IPv4Address,
        now: float,
        lease_time: float,
        *,
        reserved: Mapping[IPv4Address, str],
        reservation: IPv4Address | None = None,
    ) -> Lease | None:
        """Bind `ip` to `mac` for `lease_time` seconds (the ACK); None when it may not (NAK)."""
        if not self._allowed(mac, ip, now, reserved, reservation):
            return None
        lease = Lease(ip, mac, LeaseState.BOUND, now + lease_time)
        self._commit(lease)
        return lease

    def release(self, mac: str, ip: IPv4Address, now: float) -> Lease | None:
        """Free `ip` if `mac` holds it (RELEASE, or a REQUEST that chose another server)."""
        lease = self._by_ip.get(ip)
        if lease is None or lease.mac != mac or lease.state is LeaseState.DECLINED:
            return None
        freed = Lease(ip, mac, LeaseState.FREE, now)
        self._commit(freed)
        return freed

    def decline(self, mac: str, ip: IPv4Address, now: float) -> Lease | None:
        """Keep `ip` away from everyone for `decline_hold` seconds: `mac` found it in use."""
        lease = self._by_ip.get(ip)
        if lease is None or lease.mac != mac or not lease.active(now):
            return None
        declined = Lease(ip, mac, LeaseState.DECLINED, now + self.decline_hold)
        self._commit(declined)
        return declined

    def expire(self, now: float) -> list[Lease]:
        """Forget records whose time is up and return them as FREE (addresses are free anyway)."""
        gone = [lease for lease in self._by_ip.values() if not lease.active(now)]
        freed = []
        for lease in gone:
            free = Lease(lease.ip, lease.mac, LeaseState.FREE, lease.expires)
            self._commit(free)
            freed.append(free)
        return freed

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

    def _commit(self, lease: Lease) -> None:
        """Store a new record and tell the persistence hook."""
        self._store(lease)
        if self._on_change is not None:
            self._on_change(lease)

    def _store(self, lease: Lease) -> None:
        """Apply one record: FREE removes, anything else replaces what was on its address and MAC."""
        old = self._by_ip.pop(lease.ip, None)
        if old is not None and self._by_mac.get(old.mac) == old.ip:
            del self._by_mac[old.mac]
        if lease.state is LeaseState.FREE:
            return
        if lease.state is not LeaseState.DECLINED:
            previous = self._by_mac.get(lease.mac)
            if previous is not None and previous != lease.ip:
                self._evict(previous)
            self._by_mac[lease.mac] = lease.ip
        self._by_ip[lease.ip] = lease

    def _evict(self, ip: IPv4Address) -> None:
        """Drop a MAC's previous address when it moves to another one."""
        old = self._by_ip.pop(ip, None)
        if old is not None and self._on_change is not None:
            self._on_change(Lease(ip, old.mac, LeaseState.FREE, old.expires))

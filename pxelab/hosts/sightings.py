"""What DHCP learned about each MAC it heard (arch, firmware, address, first and last seen),
bounded in memory; profiles match on it, and `pxelab hosts seen` lists the unservable ones.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

MAX_SIGHTINGS = 8192
"""MACs remembered at most; the least recently seen is forgotten first."""


@dataclass(frozen=True)
class Sighting:
    """One MAC as DHCP saw it."""

    mac: str
    """The MAC, normalised."""
    arch: str | None
    """`x86_64` or `aarch64`, from option 93; None when it sent none pxelab knows."""
    firmware: str | None
    """bios, uefi or uefi-http, from the firmware's own request (iPXE's rounds do not change it)."""
    address: str
    """The client's address, when it had one (ciaddr or the source address)."""
    first: float
    """Wall-clock time it was first seen."""
    last: float
    """Wall-clock time it was last seen."""
    servable: bool = True
    """False when no host file, profile or boot API answer covered it when last seen."""


class Sightings:
    """Sightings by MAC, least recently seen first; written and read on the event loop."""

    def __init__(self, limit: int = MAX_SIGHTINGS) -> None:
        self.limit = limit
        self._by_mac: OrderedDict[str, Sighting] = OrderedDict()
        self._dirty: set[str] = set()

    def saw(
        self, mac: str, arch: str | None, firmware: str | None, address: str, now: float
    ) -> Sighting:
        """Record a request from mac; firmware None (iPXE) keeps the one seen before."""
        old = self._by_mac.pop(mac, None)
        if old is None:
            new = Sighting(mac, arch, firmware, address, now, now)
        else:
            new = replace(
                old,
                arch=arch or old.arch,
                firmware=firmware or old.firmware,
                address=address or old.address,
                last=now,
            )
        self._by_mac[mac] = new
        while len(self._by_mac) > self.limit:
            self._by_mac.popitem(last=False)
        self._dirty.add(mac)
        return new

    def mark(self, mac: str, servable: bool) -> None:
        """Say whether the lookup that followed the sighting found something to serve."""
        old = self._by_mac.get(mac)
        if old is not None and old.servable != servable:
            self._by_mac[mac] = replace(old, servable=servable)
            self._dirty.add(mac)

    def get(self, mac: str) -> Sighting | None:
        return self._by_mac.get(mac)

    def take_unservable(self) -> list[Sighting]:
        """The sightings changed since the last call that nothing could serve (to be stored)."""
        dirty, self._dirty = self._dirty, set()
        found = (self._by_mac.get(mac) for mac in dirty)
        return sorted((s for s in found if s is not None and not s.servable), key=lambda s: s.mac)

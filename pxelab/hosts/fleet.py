"""The inventory with profiles, sightings and the external boot API: every machine pxelab can
serve, looked up by MAC from memory (host file, then profile, then the boot API's cached answer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pxelab.errors import HostFileError
from pxelab.hosts.inventory import Host, Inventory, normalize_mac, read_host_json
from pxelab.hosts.profiles import Profile, ProfileSet, generated_name, host_labels, resolve
from pxelab.hosts.sightings import Sighting, Sightings

if TYPE_CHECKING:
    from pxelab.hosts.bootapi import BootApi


MAX_GENERATED = 8192
"""Hosts made from profiles kept at most (the oldest made is made again when asked for)."""


class Fleet(Inventory):
    """Host files that may inherit from profiles, machines served from a matching profile under a
    generated name, and (optionally) hosts an external boot API describes.

    Lookups never touch the disk or the network: `refresh` (a worker thread) re-reads files,
    and the boot API fills its cache in the background.
    """

    def __init__(
        self,
        directory: Path | None,
        profiles_dir: Path | None = None,
        *,
        rescan_on_lookup: bool = True,
        boot_api: BootApi | None = None,
        on_change: Callable[[list[Host]], object] | None = None,
    ) -> None:
        self.profile_set = ProfileSet(profiles_dir)
        self.sightings = Sightings()
        self.boot_api = boot_api
        self._origins: dict[str, dict[str, str]] = {}
        self._generated: dict[str, tuple[int, Host, dict[str, str]]] = {}
        super().__init__(directory, rescan_on_lookup=rescan_on_lookup, on_change=on_change)

    # -- reading files ------------------------------------------------------------------------

    def load(self, path: Path) -> Host:
        """A host file over the profile it names, or else the most specific one it matches."""
        data = read_host_json(path)
        host, origins = self.resolve(data, str(path))
        self._origins[str(path)] = origins
        return host

    def resolve(self, data: Any, source: str) -> tuple[Host, dict[str, str]]:
        """A host definition (host file or boot API answer) with what it inherits, and the
        origin of each value; HostFileError names the source and key."""
        if not isinstance(data, dict):
            raise HostFileError(f"{source}: expected a JSON object, got {type(data).__name__}")
        return resolve(data, source, self._profile_for(data, source))

    def _profile_for(self, data: Mapping[str, Any], source: str) -> Profile | None:
        named = data.get("profile")
        if named is not None:
            if not isinstance(named, str):
                raise HostFileError(f"{source}: key 'profile' must be a string")
            profile = self.profile_set.get(named)
            if profile is None:
                where = self.profile_set.directory
                raise HostFileError(f"{source}: key 'profile': no profile {named!r} in {where}")
            return profile
        raw_mac, arch = data.get("mac"), data.get("arch", "x86_64")
        if not isinstance(raw_mac, str):
            return None  # parse_host names the problem
        try:
            mac = normalize_mac(raw_mac)
        except ValueError:
            return None
        labels = host_labels(data, source)
        return self.profile_set.match(mac, arch if isinstance(arch, str) else None, None, labels)

    def refresh(self) -> bool:
        """Re-read changed profiles and host files (all host files when a profile changed)."""
        changed = self.profile_set.refresh()  # set before Inventory.__init__ first refreshes
        if changed:
            self.forget_files()
        return super().refresh() or changed

    # -- lookups (memory only) ----------------------------------------------------------------

    def lookup(self, mac: str) -> Host | None:
        """The host file's host, else one made from a matching profile, else the boot API's
        cached answer (asked first in `always` mode); None when nothing covers the MAC."""
        try:
            mac = normalize_mac(mac)
        except ValueError:
            return None
        api = self.boot_api
        if api is not None and api.always:
            host = api.cached(mac)
            if host is not None:
                return host
        host = super().lookup(mac)
        if host is None:
            host = self._from_profile(mac)
        if host is None and api is not None and not api.always:
            host = api.cached(mac)
        return host

    def _from_profile(self, mac: str) -> Host | None:
        seen = self.sightings.get(mac)
        arch, firmware = (seen.arch, seen.firmware) if seen is not None else (None, None)
        profile = self.profile_set.match(mac, arch, firmware, {})
        if profile is None:
            return None
        generation = self.profile_set.generation
        cached = self._generated.get(mac)
        if cached is not None and cached[0] == generation and cached[1].source == profile.source:
            return cached[1]
        data: dict[str, Any] = {"name": generated_name(profile, mac), "mac": mac}
        if "arch" not in profile.keys and arch is not None:
            data["arch"] = arch
        try:
            host, origins = resolve(data, profile.source, profile)
        except HostFileError:  # checked when the profile was read; cannot happen
            return None
        origins["name"] = f"generated from profile {profile.name}"
        origins["mac"] = "the DHCP request"
        if "arch" in data:
            origins["arch"] = "the DHCP request (option 93)"
        self._generated[mac] = (generation, host, origins)
        while len(self._generated) > MAX_GENERATED:  # a flood of made-up MACs stays bounded
            del self._generated[next(iter(self._generated))]
        return host

    def by_name(self, name: str) -> Host | None:
        """A host file's host, or a machine served from a profile or the boot API, by name."""
        host = super().by_name(name)
        if host is not None:
            return host
        for _, generated, _ in list(self._generated.values()):
            if generated.name == name:
                return generated
        return self.boot_api.by_name(name) if self.boot_api is not None else None

    def reserved(self) -> dict[IPv4Address, str]:
        """Reserved addresses of host files and of boot API answers."""
        reserved = super().reserved()
        if self.boot_api is not None:
            for host in self.boot_api.hosts():
                if host.ip is not None:
                    reserved.setdefault(host.ip, host.mac)
        return reserved

    def origins(self, host: Host) -> dict[str, str]:
        """Where each of the host's values came from: host file, profile, boot API or default."""
        if host.source in self._origins:
            return dict(self._origins[host.source])
        cached = self._generated.get(host.mac)
        if cached is not None and cached[1] is host:
            return dict(cached[2])
        if self.boot_api is not None:
            return self.boot_api.origins(host.mac)
        return {}

    def observe(
        self, mac: str, arch: str | None, firmware: str | None, address: str, now: float
    ) -> Sighting:
        """DHCP heard mac: remember what it showed, and whether anything can serve it."""
        self.sightings.saw(mac, arch, firmware, address, now)
        self.sightings.mark(mac, self.lookup(mac) is not None)
        seen = self.sightings.get(mac)
        if seen is None:  # only when the limit is 0
            raise RuntimeError("sightings: limit 0")
        return seen

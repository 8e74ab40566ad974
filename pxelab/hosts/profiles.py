"""Profiles: reusable host definitions with selectors (arch, MAC prefix, firmware, labels).

`parse_profile`, `Selector` and `resolve` are pure; `ProfileSet` owns the profiles dir and
re-reads it when a file changes (from a worker thread in the daemon), like the inventory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pxelab.dhcp.arch import ARCH_ALIASES
from pxelab.errors import HostFileError
from pxelab.hosts.inventory import Host, normalize_mac, parse_host, read_host_json
from pxelab.hosts.scan import Loaded, rescan

log = logging.getLogger("pxelab.profiles")

FIRMWARES = ("bios", "uefi", "uefi-http")
"""What a `firmware` selector may name: what DHCP learned from the client's option 93."""
SELECTOR_KEYS = frozenset({"arch", "mac_prefix", "firmware", "labels"})
"""The keys of a profile's `match` object."""
NOT_INHERITED = frozenset({"name", "mac", "ip", "match", "profile", "labels"})
"""Keys a profile may not carry for its hosts: they are one machine's own."""

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")
"""Profile names: short enough that `<profile>-<12 hex digits>` is still a host name."""
_PROBE_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Selector:
    """What a machine must show for a profile to apply; an unset field matches anything."""

    arch: str | None = None
    """`x86_64` or `aarch64`."""
    mac_prefix: str | None = None
    """Leading hex digits of the MAC, lower case, no separators."""
    firmware: str | None = None
    """bios, uefi or uefi-http (seen by DHCP; never known for a host file)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Exact values the host file's `labels` object must have."""

    @property
    def specificity(self) -> tuple[int, int]:
        """(selectors set, MAC prefix length): the larger wins."""
        count = sum(v is not None for v in (self.arch, self.mac_prefix, self.firmware))
        return count + len(self.labels), len(self.mac_prefix or "")

    def matches(
        self, mac: str, arch: str | None, firmware: str | None, labels: Mapping[str, Any]
    ) -> bool:
        """True if a machine with these traits (None: not known) satisfies every selector."""
        if self.arch is not None and arch != self.arch:
            return False
        if self.mac_prefix is not None and not mac.replace(":", "").startswith(self.mac_prefix):
            return False
        if self.firmware is not None and firmware != self.firmware:
            return False
        return all(labels.get(k) == v for k, v in self.labels.items())

    def overlaps(self, other: Selector) -> bool:
        """True if some machine could satisfy both selectors."""
        for mine, theirs in ((self.arch, other.arch), (self.firmware, other.firmware)):
            if mine is not None and theirs is not None and mine != theirs:
                return False
        a, b = self.mac_prefix or "", other.mac_prefix or ""
        if not (a.startswith(b) or b.startswith(a)):
            return False
        return all(other.labels.get(k, v) == v for k, v in self.labels.items())

    def _set(self) -> list[tuple[str, str]]:
        pairs = (("arch", self.arch), ("mac_prefix", self.mac_prefix), ("firmware", self.firmware))
        return [(k, v) for k, v in pairs if v is not None]

    def describe(self) -> str:
        """One line for messages: `arch=x86_64 mac_prefix=525400`."""
        parts = [f"{k}={v}" for k, v in self._set()]
        parts += [f"labels.{k}={v}" for k, v in sorted(self.labels.items())]
        return " ".join(parts) or "(matches every machine)"

    def to_json(self) -> dict[str, Any]:
        """The `match` object as the API shows it."""
        data: dict[str, Any] = dict(self._set())
        if self.labels:
            data["labels"] = dict(self.labels)
        return data


@dataclass(frozen=True)
class Profile:
    """One profile file: host keys to inherit and, optionally, the machines it applies to."""

    name: str
    """The profile's name (`name` key, else the file name); hosts refer to it by this."""
    keys: Mapping[str, Any]
    """The host keys it gives its hosts."""
    match: Selector | None
    """Its selectors; None: only hosts that name it use it."""
    source: str = ""
    """The file it came from."""


def _labels(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise HostFileError(f"{where} must be an object of strings")
    return dict(value)


def mac_prefix(value: Any, where: str) -> str:
    """Any spelling of a MAC prefix (`52:54:00`, `5254.00`, `52-54-0`) -> lower-case hex digits."""
    if not isinstance(value, str):
        raise HostFileError(f"{where} must be a string")
    digits = re.sub(r"[:\-. ]", "", value.strip().lower())
    if not re.fullmatch(r"[0-9a-f]{1,12}", digits):
        raise HostFileError(f"{where}: {value!r} is not a MAC prefix (1 to 12 hex digits)")
    return digits


def parse_selector(data: Any, source: str) -> Selector:
    """A `match` object -> Selector; HostFileError names the file and key."""
    if not isinstance(data, dict):
        raise HostFileError(f"{source}: key 'match' must be an object")
    unknown = sorted(set(data) - SELECTOR_KEYS)
    if unknown:
        raise HostFileError(
            f"{source}: key 'match.{unknown[0]}' is not a selector "
            f"(known: {', '.join(sorted(SELECTOR_KEYS))})"
        )
    arch = data.get("arch")
    if arch is not None:
        if not isinstance(arch, str) or arch.lower() not in ARCH_ALIASES:
            raise HostFileError(f"{source}: key 'match.arch': {arch!r} is not x86_64 or aarch64")
        arch = ARCH_ALIASES[arch.lower()]
    firmware = data.get("firmware")
    if firmware is not None and firmware not in FIRMWARES:
        raise HostFileError(
            f"{source}: key 'match.firmware': {firmware!r} is not one of {', '.join(FIRMWARES)}"
        )
    prefix = data.get("mac_prefix")
    return Selector(
        arch=arch,
        mac_prefix=None
        if prefix is None
        else mac_prefix(prefix, f"{source}: key 'match.mac_prefix'"),
        firmware=firmware,
        labels=_labels(data.get("labels", {}), f"{source}: key 'match.labels'"),
    )


def parse_profile(data: Any, source: str) -> Profile:
    """Build a Profile from one decoded file; its host keys are checked like a host file's."""
    if not isinstance(data, dict):
        raise HostFileError(f"{source}: expected a JSON object, got {type(data).__name__}")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not _PROFILE_NAME.fullmatch(name):
        raise HostFileError(
            f"{source}: key 'name': {str(name)[:60]!r} is not a profile name "
            "(letters, digits, '-', '_', '.'; at most 50)"
        )
    for key in sorted(NOT_INHERITED - {"name", "match"}):
        if key in data:
            raise HostFileError(f"{source}: key {key!r} belongs in host files, not in a profile")
    keys = {k: v for k, v in data.items() if k not in ("name", "match")}
    parse_host({**keys, "name": name, "mac": _PROBE_MAC}, source)  # the same checks
    match = parse_selector(data["match"], source) if "match" in data else None
    return Profile(name, keys, match, source)


def resolve(data: Any, source: str, profile: Profile | None) -> tuple[Host, dict[str, str]]:
    """A host from its own keys over its profile's; and where each value came from
    (`host file …`, `profile NAME (…)` or `default`)."""
    if not isinstance(data, dict):
        raise HostFileError(f"{source}: expected a JSON object, got {type(data).__name__}")
    merged = {**profile.keys, **data} if profile is not None else dict(data)
    host = parse_host(merged, source)
    origins: dict[str, str] = {}
    keys = [f.name for f in fields(Host) if f.name not in ("extra", "source")]
    for key in [*keys, *sorted(k for k in host.extra if k not in keys)]:
        if key in data or (key == "name" and "name" not in data and profile is None):
            origins[key] = f"host file {source}"
        elif profile is not None and key in profile.keys:
            origins[key] = f"profile {profile.name} ({profile.source})"
        else:
            origins[key] = "default"
    if "name" not in data:
        origins["name"] = f"host file {source} (its file name)"
    if origins["template"] == "default" and host.distro:
        origins["template"] = f"default (from distro {host.distro})"
    return host, origins


def host_labels(data: Mapping[str, Any], source: str) -> dict[str, str]:
    """A host file's `labels` object (empty when absent); HostFileError when it is not strings."""
    return _labels(data.get("labels", {}), f"{source}: key 'labels'")


def generated_name(profile: Profile, mac: str) -> str:
    """The name of a machine served from a profile: `<profile>-<MAC hex>`."""
    return f"{profile.name}-{normalize_mac(mac).replace(':', '')}"


class ProfileSet:
    """The profiles of a directory of `*.json` files, re-read when they change.

    A broken file is logged and skipped; of two profiles whose selectors tie (same specificity,
    and some machine could match both), the one read later is skipped and the tie reported.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._files: dict[Path, Loaded[Profile]] = {}
        self._by_name: dict[str, Profile] = {}
        self._errors: dict[str, str] = {}
        self.generation = 0
        """Bumped on every change (cached hosts made from profiles are dropped)."""
        self.refresh()

    @property
    def errors(self) -> dict[str, str]:
        """Broken or skipped profile files and why, by path."""
        return dict(self._errors)

    def profiles(self) -> list[Profile]:
        """The usable profiles, by name."""
        return sorted(self._by_name.values(), key=lambda p: p.name)

    def get(self, name: str) -> Profile | None:
        return self._by_name.get(name)

    def match(
        self,
        mac: str,
        arch: str | None,
        firmware: str | None,
        labels: Mapping[str, Any],
    ) -> Profile | None:
        """The most specific profile whose selectors this machine satisfies, or None."""
        best: Profile | None = None
        for profile in self._by_name.values():
            sel = profile.match
            if sel is None or not sel.matches(mac, arch, firmware, labels):
                continue
            if best is None or best.match is None or sel.specificity > best.match.specificity:
                best = profile
        return best

    def refresh(self) -> bool:
        """Re-read changed, new and removed files; True if anything changed."""
        if self.directory is None or not self.directory.is_dir():
            changed = bool(self._files)
            if changed:
                self._files, self._by_name, self._errors = {}, {}, {}
                self.generation += 1
            return changed
        try:
            files = rescan(self.directory, self._files, load_profile, log, "profile")
        except OSError as exc:
            log.error("profiles dir %s: cannot list: %s", self.directory, exc)
            return False
        if files is None:
            return False
        self._files = files
        self._reindex()
        self.generation += 1
        return True

    def _reindex(self) -> None:
        by_name: dict[str, Profile] = {}
        errors = {str(p): f.error for p, f in self._files.items() if f.error}
        for path, entry in sorted(self._files.items()):
            profile = entry.value
            if profile is None:
                continue
            error = None
            if profile.name in by_name:
                error = f"name {profile.name!r} is taken by {by_name[profile.name].source}"
            elif profile.match is not None:
                for other in by_name.values():
                    sel = other.match
                    if (
                        sel is not None
                        and sel.specificity == profile.match.specificity
                        and sel.overlaps(profile.match)
                    ):
                        error = (
                            f"selectors tie with profile {other.name} ({other.source}): "
                            f"{profile.match.describe()} against {sel.describe()}; "
                            "make one more specific"
                        )
                        break
            if error is not None:
                errors[str(path)] = f"{path}: {error}; skipped"
                log.error("profile skipped: %s", errors[str(path)])
                continue
            by_name[profile.name] = profile
        self._by_name, self._errors = by_name, errors
        log.info("profiles: %d from %s", len(by_name), self.directory)


def load_profile(path: Path) -> Profile:
    """Read and parse one profile file; every failure is a HostFileError naming the file."""
    return parse_profile(read_host_json(path), str(path))

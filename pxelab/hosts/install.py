"""Per-host install state: `install` until the installed system reports back, then `installed`.

`InstallStore` keeps one small JSON file per MAC in `<state_dir>/install/`, written atomically
(temporary file, fsync, rename), and reads it on every lookup, so the daemon and `pxelab hosts
reinstall` in another process always agree. With no directory it keeps the states in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pxelab.errors import PxelabError
from pxelab.files import write_atomic
from pxelab.hosts.inventory import normalize_mac


class InstallState(StrEnum):
    """Where a host is in its one-shot install."""

    INSTALL = "install"
    """Not installed yet (or reinstall asked): the boot script runs the installer."""
    INSTALLED = "installed"
    """The installed system called back: the boot script exits to the local disk."""


class StateError(PxelabError):
    """A state file cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class HostState:
    """One host's install state and when and why it last changed."""

    state: InstallState
    """`install` or `installed`."""
    changed: float | None = None
    """Wall-clock time of the last change; None when never recorded."""
    by: str = ""
    """Who changed it: the client address of the callback, or `cli`."""
    generation: int = 0
    """Install generation: one more at every reinstall; signed install callbacks name it."""

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "changed": self.changed,
            "by": self.by,
            "generation": self.generation,
        }


UNRECORDED = HostState(InstallState.INSTALL)
"""The state of a host nothing was recorded for: it still has to be installed."""


def parse_state(data: object, source: str) -> HostState:
    """A HostState from a decoded state file; StateError names the file and what is wrong."""
    if not isinstance(data, dict):
        raise StateError(f"{source}: expected a JSON object")
    try:
        state = InstallState(str(data.get("state")))
    except ValueError:
        raise StateError(
            f"{source}: key 'state': {data.get('state')!r} is not install or installed"
        ) from None
    changed = data.get("changed")
    if changed is not None and not isinstance(changed, int | float):
        raise StateError(f"{source}: key 'changed' must be a number")
    by = data.get("by", "")
    if not isinstance(by, str):
        raise StateError(f"{source}: key 'by' must be a string")
    generation = data.get("generation", 0)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise StateError(f"{source}: key 'generation' must be a whole number >= 0")
    return HostState(state, None if changed is None else float(changed), by, generation)


class InstallStore:
    """Install states by MAC, on disk under `directory` (or in memory when it is None)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, HostState] = {}

    def path(self, mac: str) -> Path:
        """The state file of a MAC: `<directory>/52-54-00-….json`."""
        if self.directory is None:
            raise StateError(f"{mac}: install states are kept in memory here, in no file")
        return self.directory / f"{normalize_mac(mac).replace(':', '-')}.json"

    def get(self, mac: str) -> HostState:
        """The host's state; `install` when none is recorded. StateError for a broken file."""
        mac = normalize_mac(mac)
        if self.directory is None:
            return self._memory.get(mac, UNRECORDED)
        path = self.path(mac)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return UNRECORDED
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"{path}: cannot read: {exc}") from None
        try:
            return parse_state(json.loads(text), str(path))
        except json.JSONDecodeError as exc:
            raise StateError(f"{path}: invalid JSON: {exc.msg}") from None

    def set(self, mac: str, state: InstallState, now: float, by: str) -> HostState:
        """Record a new state atomically; returns it."""
        mac = normalize_mac(mac)
        record = HostState(state, now, by)
        if self.directory is None:
            self._memory[mac] = record
            return record
        path = self.path(mac)
        try:
            write_atomic(path, json.dumps(record.to_json()) + "\n")
        except OSError as exc:
            raise StateError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return record

    def forget(self, mac: str) -> None:
        """Drop what is recorded for a MAC (its host file was removed)."""
        mac = normalize_mac(mac)
        self._memory.pop(mac, None)
        if self.directory is not None:
            try:
                self.path(mac).unlink(missing_ok=True)
            except OSError as exc:
                raise StateError(f"{self.path(mac)}: cannot remove: {exc.strerror}") from None


def install_store(state_dir: Path) -> InstallStore:
    """The store the daemon and the CLI share: `<state_dir>/install/`."""
    return InstallStore(state_dir / "install")

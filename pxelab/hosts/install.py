"""Per-host install state: `install` until the installed system reports back, then `installed`.

The states live in the state store (pxelab.state), which keeps them in memory for each request
and follows changes made by `pxelab hosts reinstall` or another instance; `InstallStore` adds the
install-generation rule. `parse_state` reads the JSON files of pxelab before the state store.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pxelab.errors import PxelabError
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


class InstallStates(Protocol):
    """Where install states live: the state store (pxelab.state), or `MemoryStates`."""

    def install_state(self, mac: str) -> HostState:
        """The recorded state, from memory (no I/O); UNRECORDED when none."""

    async def set_install_state(self, mac: str, state: HostState) -> HostState: ...

    async def forget_install_state(self, mac: str) -> None: ...


class MemoryStates:
    """Install states in this process only: for an app or a tool with no state store."""

    def __init__(self) -> None:
        self._states: dict[str, HostState] = {}

    def install_state(self, mac: str) -> HostState:
        return self._states.get(mac, UNRECORDED)

    async def set_install_state(self, mac: str, state: HostState) -> HostState:
        self._states[mac] = state
        return state

    async def forget_install_state(self, mac: str) -> None:
        self._states.pop(mac, None)


class InstallStore:
    """Install states by MAC: read from memory per request, written through to `states`."""

    def __init__(self, states: InstallStates | None = None) -> None:
        self.states: InstallStates = states if states is not None else MemoryStates()

    def get(self, mac: str) -> HostState:
        """The host's state; `install` when none is recorded."""
        return self.states.install_state(normalize_mac(mac))

    async def set(self, mac: str, state: InstallState, now: float, by: str) -> HostState:
        """Record a new state; returns it. A reinstall (state `install`) starts a new install
        generation, so callbacks signed for the one before are refused."""
        mac = normalize_mac(mac)
        generation = self.get(mac).generation
        if state is InstallState.INSTALL:
            generation += 1
        return await self.states.set_install_state(mac, HostState(state, now, by, generation))

    async def forget(self, mac: str) -> None:
        """Drop what is recorded for a MAC (its host file was removed)."""
        await self.states.forget_install_state(normalize_mac(mac))

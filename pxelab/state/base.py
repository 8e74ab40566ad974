"""What both backends share: row codecs, the in-memory install view and the change listeners.

Events are stored as JSON text built from the dataclass fields, so a new Event field needs no
schema change; `event_to_text` and `event_from_text` are the only two places that know how.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.events import JSON_KEYS, Event
from pxelab.hosts.install import UNRECORDED, HostState, InstallState
from pxelab.hosts.inventory import normalize_mac
from pxelab.state import Change, ChangeListener, StoreError

log = logging.getLogger("pxelab.state")
T = TypeVar("T")

EVENTS_PER_HOST = 500
"""Events kept per MAC; older ones are pruned."""
PRUNE_EVERY = 50
"""A MAC's old events are pruned after this many new ones (so pruning costs little)."""


def due_for_pruning(since_prune: dict[str, int], events: Iterable[Event]) -> list[str]:
    """The MACs whose old events to prune after adding `events`; `since_prune` counts the events
    added per MAC since its last pruning, and is updated."""
    due = []
    for mac, added in Counter(e.mac for e in events).items():
        count = since_prune.get(mac, 0) + added
        since_prune[mac] = 0 if count >= PRUNE_EVERY else count
        if count >= PRUNE_EVERY:
            due.append(mac)
    return due


def default_instance() -> str:
    """This process's name in the shared state: host name and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""`json.dumps(…, separators=…)` builds an encoder per call: one for every event row."""


def event_to_text(event: Event) -> str:
    """An event as the JSON text stored in its row."""
    return _COMPACT.encode(event.to_json())


def event_from_text(text: str, source: str) -> Event:
    """An event from its stored JSON; fields this version does not know are ignored."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return Event.from_json({k: v for k, v in data.items() if k in JSON_KEYS})
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{source}: bad event row: {exc}") from None


LEASE_COLUMNS = "ip, mac, state, expires, since"
"""The columns `lease_from_row` takes, in its order."""


def lease_from_row(row: Sequence[Any], source: str) -> Lease:
    """A Lease from its stored columns (`LEASE_COLUMNS`, in order); StoreError names the
    database and the address."""
    try:
        ip, mac, state, expires, since = row[:5]
        return Lease(IPv4Address(ip), str(mac), LeaseState(state), float(expires), float(since))
    except (ValueError, TypeError) as exc:
        raise StoreError(f"{source}: bad lease row {list(row)!r}: {exc}") from None


def host_state_from_row(
    state: str, changed: float | None, by: str, generation: int, source: str
) -> HostState:
    """A HostState from its stored columns."""
    try:
        return HostState(InstallState(state), changed, by, int(generation))
    except ValueError as exc:
        raise StoreError(f"{source}: bad install state row: {exc}") from None


def host_state_to_row(state: HostState) -> tuple[str, float | None, str, int]:
    """The stored columns of a HostState: state, changed, by, generation."""
    return state.state.value, state.changed, state.by, state.generation


def host_state_to_text(state: HostState | None) -> str:
    """A HostState (None: forgotten) as JSON, for a notification payload."""
    return json.dumps(None if state is None else state.to_json())


def host_state_from_text(text: str, source: str) -> HostState | None:
    """The inverse of `host_state_to_text`."""
    from pxelab.hosts.install import StateError, parse_state

    data: Any = json.loads(text)
    if data is None:
        return None
    try:
        return parse_state(data, source)
    except StateError as exc:
        raise StoreError(str(exc)) from None


class Refused(Exception):
    """A lease change did not apply: another MAC holds the address (its lease is `holder`)."""

    def __init__(self, holder: Lease) -> None:
        super().__init__(f"{holder.ip} is held by {holder.mac}")
        self.holder = holder


class Views:
    """The in-memory install view and the listeners; the backends derive from it."""

    def __init__(self, instance: str | None) -> None:
        self.instance = instance or default_instance()
        self._install: dict[str, HostState] = {}
        self._listeners: list[ChangeListener] = []

    def install_state(self, mac: str) -> HostState:
        """The in-memory view: no I/O, safe per request."""
        return self._install.get(normalize_mac(mac), UNRECORDED)

    def install_states(self) -> dict[str, HostState]:
        """Every recorded install state by MAC (a copy of the in-memory view)."""
        return dict(self._install)

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Call listener for every change; returns the function that unsubscribes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, kind: str, keys: Iterable[str], *, remote: bool = False) -> None:
        """Tell every listener about changes; a failing listener is logged, never propagated."""
        for key in keys:
            self._tell(Change(kind, key, remote=remote))

    def _settled(self, kind: str, keys: Sequence[str], holders: Sequence[T | None]) -> list[T]:
        """After a lease commit (holders: per change, None when applied, else the lease that
        refused it): tell the listeners of the applied ones by key, return the refusing ones."""
        applied = (key for key, held in zip(keys, holders, strict=True) if held is None)
        self._emit(kind, dict.fromkeys(applied))
        return [held for held in holders if held is not None]

    def _tell(self, change: Change) -> None:
        """Tell every listener about one change; a failing listener is logged."""
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("state change listener failed on %s", change)

    def _set_view(self, mac: str, state: HostState | None) -> None:
        """Apply one install change to the view."""
        if state is None:
            self._install.pop(mac, None)
        else:
            self._install[mac] = state

    def _replace_view(self, states: Mapping[str, HostState]) -> list[str]:
        """Replace the whole view (after a reload); returns the MACs whose state changed."""
        changed = [
            mac
            for mac in set(states) | set(self._install)
            if states.get(mac) != self._install.get(mac)
        ]
        self._install = dict(states)
        return sorted(changed)


def public_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))

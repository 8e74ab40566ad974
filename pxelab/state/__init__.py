"""pxelab's mutable state behind one interface: leases, install states, boot events, audit, tokens,
status-page sessions.

Two backends implement `StateStore`: embedded SQLite in `state_dir` (the default) and PostgreSQL
(`state_url = "postgresql://…"`), which several pxelab instances can share. Every method is async:
nothing on the event loop blocks on disk or database I/O. Callers that answer per request (the
`/boot` script, GRUB configs) read the store's in-memory view (`install_state`), which the store
keeps current from its own writes and, for a shared database, from other instances' notifications.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pxelab.dhcp.leases import Lease
from pxelab.dhcp6.leases import Lease6
from pxelab.errors import PxelabError
from pxelab.events import Event
from pxelab.hosts.install import HostState

SCHEMA_VERSION = 4
"""The schema this code reads and writes; a database with a newer one is refused at start.
Version 2 added `leases6` (DHCPv6 leases), version 3 `seen` (machines nothing serves), version 4
the leases' and leases6's `since` (when each was decided, so instances never let a late write undo
a newer) and `sessions` (status-page sign-ins, shared by the instances and kept across restarts)."""


SESSIONS_KEPT = 1000
"""Status-page sessions kept at most; the oldest go first when a new one is made."""


class StoreError(PxelabError):
    """The store cannot be opened, read or written; the message names the database and the cause."""


class StoreUnavailable(StoreError):
    """The database went away while serving; the request that needed it fails, pxelab reconnects."""


@dataclass(frozen=True)
class AuditRecord:
    """One control action, allowed or refused."""

    time: float
    """Wall-clock time (seconds since the epoch)."""
    who: str
    """The token's name, "signed callback", "cli", or "" when nobody was authenticated."""
    client: str
    """The client's address ("cli" for the command line)."""
    action: str
    """What was asked: "reinstall", "installed", "token-create", …"""
    target: str
    """What it was asked of: a MAC, a token name, …"""
    allowed: bool
    """Whether it was done."""
    reason: str = ""
    """Why it was refused (or a note on what was done)."""


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: its name and a hash, never the token itself."""

    name: str
    """The operator's name for it (unique)."""
    digest: str
    """Hex SHA-256 of the token."""
    created: float
    """Wall-clock time it was created."""


@dataclass(frozen=True)
class SessionRecord:
    """A status-page sign-in as stored: a hash of its id, never the id (the cookie) itself."""

    digest: str
    """Hex SHA-256 of the session id."""
    token_name: str
    """The name of the token that signed in; revoking that token ends the session."""
    created: float
    """Wall-clock time it was made."""
    expires: float
    """Wall-clock time after which it is gone (and purged)."""


@dataclass(frozen=True)
class SeenRecord:
    """A MAC that asked pxelab to boot it and that nothing could serve (a machine to adopt)."""

    mac: str
    """The MAC, normalised."""
    arch: str
    """`x86_64` or `aarch64` from its DHCP request, or "" when it sent none pxelab knows."""
    firmware: str
    """bios, uefi or uefi-http, or "" when not known."""
    address: str
    """Its last known address, or ""."""
    first: float
    """Wall-clock time it was first seen."""
    last: float
    """Wall-clock time it was last seen."""

    def to_json(self) -> dict[str, str | float]:
        """As `pxelab hosts seen --json` and GET /api/hosts/seen show it."""
        return {
            "mac": self.mac,
            "arch": self.arch,
            "firmware": self.firmware,
            "address": self.address,
            "first_seen": self.first,
            "last_seen": self.last,
        }


@dataclass(frozen=True)
class Change:
    """What another instance (or this one) changed, for the listeners of `subscribe`."""

    kind: str
    """"lease", "lease6" (DHCPv6), "install", "event", "token" or "session" (one ended)."""
    key: str
    """The MAC (lease, install, event), the DHCPv6 client (lease6), the token name, or the
    session's digest."""
    remote: bool = False
    """Made by another instance sharing the database (told by its notification)."""
    lease: Lease | Lease6 | None = None
    """For a lease (lease6) change another instance made: the Lease (Lease6) it wrote."""


ChangeListener = Callable[[Change], None]


class StateStore(Protocol):
    """All mutable state of pxelab; one instance per process, opened by `open_store(config)`."""

    instance: str
    """This process's name in the shared state (host name and pid unless configured)."""

    async def open(self) -> None:
        """Connect, create or migrate the schema, check its version, load the in-memory views.
        StoreError with one clear line (unreachable, bad credentials, newer schema)."""

    async def close(self) -> None: ...

    # -- DHCP leases (the DHCP adapter's LeaseStore) ----------------------------------------
    async def load_leases(self) -> list[Lease]: ...

    async def commit_leases(self, changes: Sequence[Lease], now: float) -> list[Lease]:
        """Apply lease changes, each atomically. Returns, for each change refused because another
        MAC holds that address in the store (another instance's lease), the lease held there;
        an empty list when everything was applied. Never check-then-insert."""

    async def active_leases(self, now: float) -> list[tuple[Lease, str]]:
        """Every active lease with the instance that granted it."""

    async def load_leases6(self) -> list[Lease6]:
        """Every stored DHCPv6 lease (table `leases6`)."""

    async def commit_leases6(self, changes: Sequence[Lease6], now: float) -> list[Lease6]:
        """Apply DHCPv6 lease changes (offers are not kept), each atomically, by the rules of
        `commit_leases` with the client and IA in place of the MAC. Returns, for each change
        refused, the lease that refused it: another client's live lease on its address, or a
        binding of its IA elsewhere decided later (`pxelab.dhcp6.leases.supersedes`). A BOUND
        replaces its IA's other binding; a FREE removes only the record it names (same client
        and IA, the same `since`)."""

    async def active_leases6(self, now: float) -> list[tuple[Lease6, str]]:
        """Every active DHCPv6 lease with the instance that granted it, in address order."""

    # -- install states ---------------------------------------------------------------------
    def install_state(self, mac: str) -> HostState:
        """The in-memory view: no I/O, safe per request."""

    async def set_install_state(self, mac: str, state: HostState) -> HostState: ...

    async def forget_install_state(self, mac: str) -> None: ...

    # -- boot events ------------------------------------------------------------------------
    async def add_events(self, events: Sequence[Event]) -> None:
        """Append; the store keeps the last `events_per_host` per MAC."""

    async def events(self, mac: str) -> list[Event]:
        """One MAC's events, oldest first."""

    async def recent_events(self, limit: int) -> list[Event]:
        """The newest events of all MACs, oldest first (to refill the timeline at start)."""

    # -- audit trail, tokens, the server secret ---------------------------------------------
    async def audit(self, record: AuditRecord) -> None: ...

    async def audit_records(self, limit: int) -> list[AuditRecord]:
        """The newest `limit` records, oldest first."""

    async def add_token(self, token: TokenRecord) -> None:
        """StoreError when the name exists."""

    async def tokens(self) -> list[TokenRecord]: ...

    async def revoke_token(self, name: str) -> bool:
        """False when there was no such token. Its sessions end with it (one transaction)."""

    # -- status-page sessions -----------------------------------------------------------------
    async def add_session(self, session: SessionRecord, token_digest: str) -> bool:
        """Store a new session if its token (that name with that digest) still exists, purging
        expired sessions and the oldest beyond `SESSIONS_KEPT`; False when the token is gone."""

    async def session(self, digest: str, now: float) -> SessionRecord | None:
        """The live session with this digest whose token still exists; None otherwise."""

    async def end_session(self, digest: str) -> bool:
        """Sign out (every instance is told); False when there was no such session."""

    async def secret(self) -> bytes:
        """The server secret for signed install callbacks: made once, shared by all instances."""

    async def note_seen(self, records: Sequence[SeenRecord]) -> None:
        """Remember unservable MACs: first seen is kept, last seen and what is known updated."""
        ...

    async def seen(self) -> list[SeenRecord]:
        """Every remembered unservable MAC, most recently seen first."""
        ...

    async def forget_seen(self, mac: str) -> bool:
        """Drop a MAC from the seen list (adopted); False when it was not there."""
        ...

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Call listener for every change (this instance's and, when shared, the others');
        returns the function that unsubscribes it."""

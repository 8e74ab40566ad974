"""The shared backend: PostgreSQL through asyncpg, for several pxelab instances on one database.

Every write sends a NOTIFY (in its transaction) on channel `pxelab`; each instance LISTENs on a
connection of its own, keeps its install view current from them and tells its listeners. Calls
have a timeout; a lost database makes them raise StoreUnavailable while a watchdog reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from pxelab.dhcp.leases import Lease, LeaseState
from pxelab.events import Event
from pxelab.hosts.install import HostState
from pxelab.hosts.inventory import normalize_mac
from pxelab.state import (
    AuditRecord,
    Change,
    SeenRecord,
    StoreError,
    StoreUnavailable,
    TokenRecord,
)
from pxelab.state.base import (
    EVENTS_PER_HOST,
    LEASE_COLUMNS,
    Views,
    due_for_pruning,
    event_from_text,
    event_to_text,
    host_state_from_row,
    host_state_from_text,
    host_state_to_row,
    host_state_to_text,
    lease_from_row,
    log,
    public_url,
)
from pxelab.state.leases6 import Lease6, lease6_from_row, pg_active6, pg_commit6, pg_load6, wanted
from pxelab.state.pg_schema import UPSERT_SEEN, prepare
from pxelab.state.sessions import PgSessions

CHANNEL = "pxelab"
"""The NOTIFY channel every instance listens on."""

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
)
"""What a database that went away (or is restarting) raises."""
T = TypeVar("T")


def _describe(exc: BaseException) -> str:
    """One line on why a connection failed."""
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"authentication failed: {exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return "cannot reach the server: nothing listens there (is PostgreSQL running?)"
    if isinstance(exc, OSError):
        return f"cannot reach the server: {exc.strerror or exc}"
    if isinstance(exc, ValueError):
        return f"invalid URL: {exc}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class PostgresStore(Views, PgSessions):
    """The StateStore on a PostgreSQL database; `open` must be awaited before anything else.
    Status-page sessions and token revocation come from `PgSessions`."""

    def __init__(
        self,
        url: str,
        *,
        instance: str | None = None,
        timeout: float = 5.0,
        reconnect_interval: float = 1.0,
        events_per_host: int = EVENTS_PER_HOST,
    ) -> None:
        super().__init__(instance)
        self.url = url
        self.name = public_url(url)
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.events_per_host = events_per_host
        self._origin = uuid.uuid4().hex  # tells this store's own notifications apart
        self._pool: Any = None
        self._listen: Any = None
        self._lost = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self._pending: list[tuple[str, HostState | None]] | None = None
        self._since_prune: dict[str, int] = {}
        self._secret: bytes | None = None

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """fn(connection) with a timeout; StoreUnavailable when the database is away."""
        if self._pool is None:
            raise StoreError(f"{self.name}: the state store is not open")
        try:
            async with asyncio.timeout(self.timeout), self._pool.acquire() as conn:
                return await fn(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"{self.name}: cannot {what}: {_describe(exc)}") from None
        except asyncpg.PostgresError as exc:
            raise StoreError(f"{self.name}: cannot {what}: {_describe(exc)}") from None

    async def _notify(self, conn: Any, kind: str, key: str, state: str | None = None) -> None:
        """Queue a notification (sent when the transaction commits)."""
        payload = {"o": self._origin, "k": kind, "m": key}
        if state is not None:
            payload["s"] = state
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(payload))

    # -- open and close ---------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, load the install view, LISTEN."""
        try:
            self._pool = await asyncio.wait_for(
                asyncpg.create_pool(
                    self.url,
                    # No floor to maintain (asyncpg would log a traceback a second while the
                    # database is away); the connections made are kept (no idle timeout).
                    min_size=0,
                    max_size=4,
                    max_inactive_connection_lifetime=0,
                    timeout=self.timeout,
                    command_timeout=self.timeout,
                ),
                self.timeout + 1,
            )
            async with asyncio.timeout(self.timeout + 1), self._pool.acquire():
                pass  # one connection now: an unreachable or refusing database fails here
        except Exception as exc:  # any failure to connect is one clear line
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None
            raise StoreError(f"{self.name}: cannot connect: {_describe(exc)}") from None
        try:
            await self._run("create the schema", lambda conn: prepare(conn, self.name))
            await self._connect_listener()
        except BaseException:
            await self.close()
            raise
        self._watchdog = asyncio.create_task(self._watch(), name="pxelab-pg-watchdog")

    async def _connect_listener(self) -> None:
        """LISTEN on a connection of its own, then (re)load the install view; changes that arrive
        while it loads are applied again on top of the loaded snapshot."""
        conn = await asyncio.wait_for(asyncpg.connect(self.url, timeout=self.timeout), self.timeout)
        self._pending = []
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
            conn.add_termination_listener(lambda _conn: self._lost.set())
            states = await self._run("load install states", self._load_install)
        except BaseException:
            self._pending = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.timeout)
            raise
        pending, self._pending = self._pending, None
        self._listen = conn
        self._lost.clear()
        changed = self._replace_view(states)
        for mac, state in pending:
            self._set_view(mac, state)
        self._emit("install", changed, remote=True)  # what others changed while we were away

    def _set_view(self, mac: str, state: HostState | None) -> None:
        super()._set_view(mac, state)
        if self._pending is not None:
            self._pending.append((mac, state))

    async def _watch(self) -> None:
        """Reconnect the LISTEN connection when it is lost, backing off up to 30 s (notifications
        missed meanwhile are made up for by reloading the install view)."""
        failures = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.reconnect_interval)
            if self._listen is not None and not self._listen.is_closed():
                continue
            if self._listen is not None:
                log.warning("state: lost the connection to %s, reconnecting", self.name)
                self._listen = None
            try:
                await self._connect_listener()
            except (StoreError, *_UNAVAILABLE, asyncpg.PostgresError) as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "state: %s is unavailable: %s", self.name, _describe(exc))
                await asyncio.sleep(min(self.reconnect_interval * 2**failures, 30.0))
                continue
            failures = 0
            log.info("state: reconnected to %s", self.name)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            if data.get("o") == self._origin:
                return  # this store's own change: already applied and told
            kind, key = str(data["k"]), str(data["m"])
            lease: Lease | Lease6 | None = None
            if kind == "install":
                self._set_view(key, host_state_from_text(data.get("s", "null"), self.name))
            elif kind == "lease" and "l" in data:
                lease = lease_from_row(data["l"], self.name)
            elif kind == "lease6" and "l" in data:
                lease = lease6_from_row(data["l"], self.name)
        except (ValueError, KeyError, TypeError, AttributeError, StoreError) as exc:
            log.warning("state: %s: bad notification %r: %s", self.name, payload, exc)
            return
        self._tell(Change(kind, key, remote=True, lease=lease))

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._listen is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listen.close(), self.timeout)
            self._listen = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except Exception:
                pool.terminate()

    # -- leases -----------------------------------------------------------------------------

    async def load_leases(self) -> list[Lease]:
        rows = await self._run(
            "read leases", lambda conn: conn.fetch(f"SELECT {LEASE_COLUMNS} FROM leases")
        )
        return [lease_from_row(r, self.name) for r in rows]

    async def commit_leases(self, changes: Sequence[Lease], now: float) -> list[Lease]:
        """Apply lease changes, each atomically; the leases that refused them (see StateStore)."""
        kept = [c for c in changes if c.state is not LeaseState.OFFERED]
        if not kept:
            return []

        async def apply(conn: Any) -> list[Lease | None]:
            return [await self._apply_lease(conn, change, now) for change in kept]

        holders = await self._run("write leases", apply)
        return self._settled("lease", [c.mac for c in kept], holders)

    async def _apply_lease(self, conn: Any, lease: Lease, now: float) -> Lease | None:
        """One change, atomically, in one round trip (the schema's `pxelab_commit_lease`)."""
        written = [int(lease.ip), lease.mac, lease.state.value, lease.expires, lease.since]
        payload = json.dumps({"o": self._origin, "k": "lease", "m": lease.mac, "l": written})
        row = await conn.fetchrow(
            "SELECT * FROM pxelab_commit_lease($1, $2, $3, $4, $5, $6, $7, $8)",
            *written,
            self.instance,
            now,
            payload,
        )
        return None if row is None else lease_from_row(row, self.name)

    async def active_leases(self, now: float) -> list[tuple[Lease, str]]:
        rows = await self._run(
            "read leases",
            lambda conn: conn.fetch(
                f"SELECT {LEASE_COLUMNS}, instance FROM leases WHERE expires > $1 ORDER BY ip",
                now,
            ),
        )
        return [(lease_from_row(r, self.name), r[5]) for r in rows]

    async def load_leases6(self) -> list[Lease6]:
        return await self._run("read IPv6 leases", lambda conn: pg_load6(conn, self.name))

    async def commit_leases6(self, changes: Sequence[Lease6], now: float) -> list[Lease6]:
        """Apply IPv6 lease changes, each atomically; the leases that refused them."""
        kept, me = wanted(changes), (self.instance, now, self.name, self._origin)
        if not kept:
            return []
        holders = await self._run("write IPv6 leases", lambda conn: pg_commit6(conn, kept, *me))
        return self._settled("lease6", [c.client for c in kept], holders)

    async def active_leases6(self, now: float) -> list[tuple[Lease6, str]]:
        return await self._run("read IPv6 leases", lambda conn: pg_active6(conn, now, self.name))

    # -- install states ---------------------------------------------------------------------

    async def _load_install(self, conn: Any) -> dict[str, HostState]:
        rows = await conn.fetch("SELECT mac, state, changed, changed_by, generation FROM install")
        return {r[0]: host_state_from_row(r[1], r[2], r[3], r[4], self.name) for r in rows}

    async def set_install_state(self, mac: str, state: HostState) -> HostState:
        mac = normalize_mac(mac)

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO install (mac, state, changed, changed_by, generation) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (mac) DO UPDATE SET "
                    "state = EXCLUDED.state, changed = EXCLUDED.changed, "
                    "changed_by = EXCLUDED.changed_by, generation = EXCLUDED.generation",
                    mac,
                    *host_state_to_row(state),
                )
                await self._notify(conn, "install", mac, host_state_to_text(state))

        await self._run("write the install state of " + mac, write)
        self._set_view(mac, state)
        self._emit("install", [mac])
        return state

    async def forget_install_state(self, mac: str) -> None:
        mac = normalize_mac(mac)

        async def forget(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM install WHERE mac = $1", mac)
                await self._notify(conn, "install", mac, host_state_to_text(None))

        await self._run("forget the install state of " + mac, forget)
        self._set_view(mac, None)
        self._emit("install", [mac])

    # -- events -----------------------------------------------------------------------------

    async def add_events(self, events: Sequence[Event]) -> None:
        """Append; the store keeps the last `events_per_host` per MAC."""
        if not events:
            return
        macs = list(dict.fromkeys(e.mac for e in events))
        prune = due_for_pruning(self._since_prune, events)

        async def write(conn: Any) -> None:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO events (mac, time, data) VALUES ($1, $2, $3::jsonb)",
                    [(e.mac, e.time, event_to_text(e)) for e in events],
                )
                for mac in prune:
                    await conn.execute(
                        "DELETE FROM events WHERE mac = $1 AND id <= (SELECT id FROM events "
                        "WHERE mac = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                        mac,
                        self.events_per_host,
                    )
                for mac in macs:
                    await self._notify(conn, "event", mac)

        await self._run("write events", write)
        self._emit("event", macs)

    async def events(self, mac: str) -> list[Event]:
        """One MAC's events, oldest first."""
        rows = await self._run(
            "read events",
            lambda conn: conn.fetch(
                "SELECT data FROM events WHERE mac = $1 ORDER BY id DESC LIMIT $2",
                mac,
                self.events_per_host,
            ),
        )
        return [event_from_text(r[0], self.name) for r in reversed(rows)]

    async def recent_events(self, limit: int) -> list[Event]:
        """The newest events of all MACs, oldest first."""
        rows = await self._run(
            "read events",
            lambda conn: conn.fetch("SELECT data FROM events ORDER BY id DESC LIMIT $1", limit),
        )
        return [event_from_text(r[0], self.name) for r in reversed(rows)]

    # -- audit, tokens, secret --------------------------------------------------------------

    async def audit(self, record: AuditRecord) -> None:
        await self._run(
            "write the audit trail",
            lambda conn: conn.execute(
                "INSERT INTO audit (time, who, client, action, target, allowed, reason) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                record.time,
                record.who,
                record.client,
                record.action,
                record.target,
                record.allowed,
                record.reason,
            ),
        )

    async def audit_records(self, limit: int) -> list[AuditRecord]:
        """The newest `limit` records, oldest first."""
        rows = await self._run(
            "read the audit trail",
            lambda conn: conn.fetch(
                "SELECT time, who, client, action, target, allowed, reason FROM audit "
                "ORDER BY id DESC LIMIT $1",
                limit,
            ),
        )
        return [AuditRecord(*r) for r in reversed(rows)]

    async def add_token(self, token: TokenRecord) -> None:
        """StoreError when the name exists."""

        async def insert(conn: Any) -> None:
            try:
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO tokens (name, digest, created) VALUES ($1, $2, $3)",
                        token.name,
                        token.digest,
                        token.created,
                    )
                    await self._notify(conn, "token", token.name)
            except asyncpg.UniqueViolationError:
                raise StoreError(f"{self.name}: a token named {token.name!r} exists") from None

        await self._run("add a token", insert)
        self._emit("token", [token.name])

    async def tokens(self) -> list[TokenRecord]:
        rows = await self._run(
            "read tokens",
            lambda conn: conn.fetch("SELECT name, digest, created FROM tokens ORDER BY name"),
        )
        return [TokenRecord(r[0], r[1], r[2]) for r in rows]

    async def secret(self) -> bytes:
        """The server secret: 32 random bytes, made once by whichever instance came first."""
        if self._secret is None:

            async def get(conn: Any) -> bytes:
                await conn.execute(
                    "INSERT INTO secret (id, value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                    secrets.token_bytes(32),
                )
                return bytes(await conn.fetchval("SELECT value FROM secret WHERE id = 1"))

            self._secret = await self._run("read the server secret", get)
        return self._secret

    async def note_seen(self, records: Sequence[SeenRecord]) -> None:
        rows = [(r.mac, r.arch, r.firmware, r.address, r.first, r.last) for r in records]
        if rows:
            await self._run(
                "remember machines seen", lambda conn: conn.executemany(UPSERT_SEEN, rows)
            )

    async def seen(self) -> list[SeenRecord]:
        rows = await self._run(
            "read machines seen",
            lambda conn: conn.fetch(
                "SELECT mac, arch, firmware, address, first, last FROM seen ORDER BY last DESC"
            ),
        )
        return [SeenRecord(*r) for r in rows]

    async def forget_seen(self, mac: str) -> bool:
        status = await self._run(
            "forget a machine seen",
            lambda conn: conn.execute("DELETE FROM seen WHERE mac = $1", mac),
        )
        return bool(status != "DELETE 0")

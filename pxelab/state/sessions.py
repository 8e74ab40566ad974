"""Status-page sessions in the state store (table `sessions`, schema version 4) and the token
revocation that ends them: the SQL of both backends, as mixins of SqliteStore and PostgresStore.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pxelab.state import SESSIONS_KEPT, SessionRecord

T = TypeVar("T")

SQLITE_SESSIONS = """CREATE TABLE sessions (
    digest TEXT PRIMARY KEY, token_name TEXT NOT NULL, created REAL NOT NULL,
    expires REAL NOT NULL)"""
"""The SQLite table: one row per session, by the SHA-256 of its id (the cookie is never stored)."""
PG_SESSIONS = """CREATE TABLE sessions (
    digest text PRIMARY KEY, token_name text NOT NULL, created double precision NOT NULL,
    expires double precision NOT NULL)"""
"""The PostgreSQL table."""

_COLUMNS = "s.digest, s.token_name, s.created, s.expires"
_INSERT = """INSERT INTO sessions (digest, token_name, created, expires)
SELECT {}, t.name, {}, {} FROM tokens t WHERE t.name = {} AND t.digest = {}"""
# A session is only made for a token that is still there (never check-then-insert: a revoke
# between the sign-in's token check and this insert leaves no session behind).
_INSERT_SQLITE = _INSERT.format("?", "?", "?", "?", "?")
_INSERT_PG = _INSERT.format("$1", "$2", "$3", "$4", "$5")
_LOOKUP = f"""SELECT {_COLUMNS} FROM sessions s JOIN tokens t ON t.name = s.token_name
WHERE s.digest = {{}} AND s.expires > {{}}"""
_LOOKUP_SQLITE = _LOOKUP.format("?", "?")
_LOOKUP_PG = _LOOKUP.format("$1", "$2")
_CAP_SQLITE = """DELETE FROM sessions WHERE digest IN (
    SELECT digest FROM sessions ORDER BY created DESC, rowid DESC LIMIT -1 OFFSET ?)"""
_CAP_PG = """DELETE FROM sessions WHERE digest IN (
    SELECT digest FROM sessions ORDER BY created DESC OFFSET $1)"""


def _values(session: SessionRecord, token_digest: str) -> tuple[str, float, float, str, str]:
    return session.digest, session.created, session.expires, session.token_name, token_digest


class _Sqlite(Protocol):
    """What the SQLite mixin uses of the SqliteStore."""

    path: Path

    @property
    def db(self) -> sqlite3.Connection: ...

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

    async def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T: ...

    def _emit(self, kind: str, keys: Iterable[str], *, remote: bool = False) -> None: ...


class SqliteSessions:
    """Sessions and token revocation on SQLite (every statement in the store's worker thread)."""

    async def add_session(self: _Sqlite, session: SessionRecord, token_digest: str) -> bool:
        """Store a new session if its token still exists; purge expired and surplus ones."""

        def add() -> bool:
            with self._transaction() as db:
                db.execute("DELETE FROM sessions WHERE expires <= ?", (session.created,))
                added = db.execute(_INSERT_SQLITE, _values(session, token_digest)).rowcount
                db.execute(_CAP_SQLITE, (SESSIONS_KEPT,))
            return bool(added)

        return await self._call("start a status-page session", add)

    async def session(self: _Sqlite, digest: str, now: float) -> SessionRecord | None:
        """The live session with this digest whose token still exists."""
        row = await self._call(
            "read a status-page session",
            lambda: self.db.execute(_LOOKUP_SQLITE, (digest, now)).fetchone(),
        )
        return None if row is None else SessionRecord(*row)

    async def end_session(self: _Sqlite, digest: str) -> bool:
        """Sign out; False when there was no such session."""
        count = await self._call(
            "end a status-page session",
            lambda: self.db.execute("DELETE FROM sessions WHERE digest = ?", (digest,)).rowcount,
        )
        if count:
            self._emit("session", [digest])
        return bool(count)

    async def revoke_token(self: _Sqlite, name: str) -> bool:
        """False when there was no such token; its sessions end with it."""

        def delete() -> int:
            with self._transaction() as db:
                db.execute("DELETE FROM sessions WHERE token_name = ?", (name,))
                count: int = db.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount
            return count

        count = await self._call("revoke a token", delete)
        if count:
            self._emit("token", [name])
        return bool(count)


class _Pg(Protocol):
    """What the PostgreSQL mixin uses of the PostgresStore."""

    async def _run(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T: ...

    async def _notify(self, conn: Any, kind: str, key: str, state: str | None = None) -> None: ...

    def _emit(self, kind: str, keys: Iterable[str], *, remote: bool = False) -> None: ...


class PgSessions:
    """Sessions and token revocation on PostgreSQL; an end is NOTIFYed to every instance."""

    async def add_session(self: _Pg, session: SessionRecord, token_digest: str) -> bool:
        """Store a new session if its token still exists; purge expired and surplus ones."""

        async def add(conn: Any) -> bool:
            async with conn.transaction():
                await conn.execute("DELETE FROM sessions WHERE expires <= $1", session.created)
                status = await conn.execute(_INSERT_PG, *_values(session, token_digest))
                await conn.execute(_CAP_PG, SESSIONS_KEPT)
            return bool(status != "INSERT 0 0")

        return await self._run("start a status-page session", add)

    async def session(self: _Pg, digest: str, now: float) -> SessionRecord | None:
        """The live session with this digest whose token still exists."""
        row = await self._run(
            "read a status-page session", lambda conn: conn.fetchrow(_LOOKUP_PG, digest, now)
        )
        return None if row is None else SessionRecord(*row)

    async def end_session(self: _Pg, digest: str) -> bool:
        """Sign out, and tell every instance; False when there was no such session."""

        async def delete(conn: Any) -> bool:
            async with conn.transaction():
                status = await conn.execute("DELETE FROM sessions WHERE digest = $1", digest)
                if status == "DELETE 0":
                    return False
                await self._notify(conn, "session", digest)
                return True

        done = await self._run("end a status-page session", delete)
        if done:
            self._emit("session", [digest])
        return done

    async def revoke_token(self: _Pg, name: str) -> bool:
        """False when there was no such token; its sessions end with it (every instance told)."""

        async def delete(conn: Any) -> bool:
            async with conn.transaction():
                await conn.execute("DELETE FROM sessions WHERE token_name = $1", name)
                status = await conn.execute("DELETE FROM tokens WHERE name = $1", name)
                if status == "DELETE 0":
                    return False
                await self._notify(conn, "token", name)
                return True

        done = await self._run("revoke a token", delete)
        if done:
            self._emit("token", [name])
        return done

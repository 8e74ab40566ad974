"""The part of the state store the control plane needs (tokens, sessions, secret, audit), and a
memory one. `StateStore` (pxelab.state) has these methods; `MemoryAuthStore` keeps them in memory
for an app started without a store (tests, embedded use): no tokens, so every write is refused.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Protocol

from pxelab.state import (
    SESSIONS_KEPT,
    AuditRecord,
    Change,
    ChangeListener,
    SessionRecord,
    StoreError,
    TokenRecord,
)

log = logging.getLogger("pxelab.audit")


class AuthStore(Protocol):
    """Tokens, the server secret and the audit trail (a subset of `StateStore`)."""

    async def audit(self, record: AuditRecord) -> None: ...

    async def audit_records(self, limit: int) -> list[AuditRecord]: ...

    async def add_token(self, token: TokenRecord) -> None: ...

    async def tokens(self) -> list[TokenRecord]: ...

    async def revoke_token(self, name: str) -> bool: ...

    async def secret(self) -> bytes: ...

    async def add_session(self, session: SessionRecord, token_digest: str) -> bool: ...

    async def session(self, digest: str, now: float) -> SessionRecord | None: ...

    async def end_session(self, digest: str) -> bool: ...

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]: ...


class MemoryAuthStore:
    """An AuthStore in memory: nothing survives the process."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._sessions: dict[str, SessionRecord] = {}
        self._audit: list[AuditRecord] = []
        self._secret = secrets.token_bytes(32)
        self._listeners: list[ChangeListener] = []

    async def audit(self, record: AuditRecord) -> None:
        self._audit.append(record)
        del self._audit[:-10000]

    async def audit_records(self, limit: int) -> list[AuditRecord]:
        return self._audit[-limit:] if limit > 0 else []

    async def add_token(self, token: TokenRecord) -> None:
        if token.name in self._tokens:
            raise StoreError(f"a token named {token.name!r} exists")
        self._tokens[token.name] = token

    async def tokens(self) -> list[TokenRecord]:
        return list(self._tokens.values())

    async def revoke_token(self, name: str) -> bool:
        self._sessions = {k: s for k, s in self._sessions.items() if s.token_name != name}
        return self._tell("token", name) if self._tokens.pop(name, None) else False

    async def secret(self) -> bytes:
        return self._secret

    async def add_session(self, session: SessionRecord, token_digest: str) -> bool:
        token = self._tokens.get(session.token_name)
        if token is None or token.digest != token_digest:
            return False
        live = [s for s in self._sessions.values() if s.expires > session.created]
        live = sorted(live, key=lambda s: s.created)[-(SESSIONS_KEPT - 1) :]
        self._sessions = {s.digest: s for s in [*live, session]}
        return True

    async def session(self, digest: str, now: float) -> SessionRecord | None:
        found = self._sessions.get(digest)
        if found is None or found.expires <= now or found.token_name not in self._tokens:
            return None
        return found

    async def end_session(self, digest: str) -> bool:
        return self._tell("session", digest) if self._sessions.pop(digest, None) else False

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _tell(self, kind: str, key: str) -> bool:
        for listener in list(self._listeners):
            listener(Change(kind, key))
        return True


def log_audit(record: AuditRecord) -> None:
    """The audit line of the log: who, from where, what, of what, allowed or refused and why."""
    verdict = "allowed" if record.allowed else "REFUSED"
    log.log(
        logging.INFO if record.allowed else logging.WARNING,
        "audit: %s %s %s by %s from %s%s",
        verdict,
        record.action,
        record.target or "-",
        record.who or "(nobody)",
        record.client or "?",
        f": {record.reason}" if record.reason else "",
    )


async def write_audit(store: AuthStore, record: AuditRecord) -> None:
    """Log the record, then store it; a store that fails is logged, never hides the action."""
    log_audit(record)
    try:
        await store.audit(record)
    except StoreError as exc:
        log.error("audit: cannot store the record above: %s", exc)

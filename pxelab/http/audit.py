"""The part of the state store the control plane needs (tokens, secret, audit), and a memory one.

`StateStore` (pxelab.state) has these methods; `MemoryAuthStore` keeps them in memory for an app
started without a store (tests, embedded use): no tokens, so every write is refused.
"""

from __future__ import annotations

import logging
import secrets
from typing import Protocol

from pxelab.state import AuditRecord, StoreError, TokenRecord

log = logging.getLogger("pxelab.audit")


class AuthStore(Protocol):
    """Tokens, the server secret and the audit trail (a subset of `StateStore`)."""

    async def audit(self, record: AuditRecord) -> None: ...

    async def audit_records(self, limit: int) -> list[AuditRecord]: ...

    async def add_token(self, token: TokenRecord) -> None: ...

    async def tokens(self) -> list[TokenRecord]: ...

    async def revoke_token(self, name: str) -> bool: ...

    async def secret(self) -> bytes: ...


class MemoryAuthStore:
    """An AuthStore in memory: nothing survives the process."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenRecord] = {}
        self._audit: list[AuditRecord] = []
        self._secret = secrets.token_bytes(32)

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
        return self._tokens.pop(name, None) is not None

    async def secret(self) -> bytes:
        return self._secret


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

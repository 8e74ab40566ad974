"""A guard with one known token, for tests that drive the app in process."""

from __future__ import annotations

from pxelab.http.audit import MemoryAuthStore
from pxelab.http.auth import ApiAuth, token_digest
from pxelab.http.guard import Guard
from pxelab.state import TokenRecord

TOKEN = "pxl_test-token-of-the-operator-ops"
"""The token of `ops`, the one operator of these tests."""
AUTH = {"Authorization": f"Bearer {TOKEN}"}
"""Headers that carry it."""


async def guard_with_token(
    api_auth: ApiAuth = ApiAuth.WRITES, *, https_only: bool = False
) -> Guard:
    """A guard over a memory store that knows TOKEN as `ops`."""
    store = MemoryAuthStore()
    await store.add_token(TokenRecord("ops", token_digest(TOKEN), 0.0))
    return Guard(store, api_auth, https_only=https_only)

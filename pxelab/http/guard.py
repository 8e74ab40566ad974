"""The HTTP side of the control plane: one middleware decides who may do what before any handler.

Writes need a bearer token (the API), a status-page session with its CSRF token (the page's own
forms), or a valid signature (the install callback, checked by its handler). A cross-origin
browser request changes nothing. Every allowed control action and every refusal is audited.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from aiohttp import web

from pxelab.hosts.install import HostState, StateError
from pxelab.http import auth
from pxelab.http.audit import AuthStore, MemoryAuthStore, write_audit
from pxelab.http.auth import ApiAuth, Session, SessionCache
from pxelab.http.keys import NOTE
from pxelab.state import AuditRecord, Change, SessionRecord, StoreError, TokenRecord

log = logging.getLogger("pxelab.http")

WHO: web.RequestKey[str] = web.RequestKey("who", str)
"""Request key: who the guard let in (a token's name, or `signed callback`)."""
PAGE_SESSION: web.RequestKey[Session] = web.RequestKey("page_session", Session)
"""Request key: the request's live status-page session, once the guard or the page looked."""
COOKIE = "pxelab_session"
"""The status page's session cookie."""
SIGNED_CALLBACK_PATH = re.compile(r"/api/hosts/[^/]+/installed/[^/]+")
"""The signed install callback: its handler checks the signature, not the guard."""
_HOST_ACTION = re.compile(r"/(?:api|status)/hosts/([^/]+)/([a-z-]+)(?:/[^/]*)?")
CREDENTIALS_KEPT = 16384
"""Signed callback credentials remembered at most; the memo starts afresh when it is full."""
AUDIT_SHOWN = 1000
"""Records GET /api/audit returns at most (newest last)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Guard:
    """The control plane's settings and state for one app: store, sessions, secret."""

    def __init__(
        self,
        store: AuthStore | None = None,
        api_auth: ApiAuth = ApiAuth.WRITES,
        *,
        https_only: bool = False,
    ) -> None:
        self.store: AuthStore = store or MemoryAuthStore()
        self.api_auth = api_auth
        self.https_only = https_only
        self.sessions = SessionCache()
        """Sessions read lately (the sessions themselves are in the store)."""
        self.store.subscribe(lambda change: self.sessions.on_change(change))
        self.secret: bytes | None = None
        """Loaded from the store when the app starts (`load`)."""
        self._credentials: dict[tuple[str, int], tuple[bytes, str]] = {}
        """(MAC, generation) -> (the secret it was signed with, credential): an HMAC per host
        and generation, not one per boot request."""

    async def load(self) -> None:
        """Read the server secret (made once, shared by every instance on the store)."""
        self.secret = await self.store.secret()

    async def _secret(self) -> bytes:
        if self.secret is None:
            self.secret = await self.store.secret()
        return self.secret

    def credential(self, mac: str, generation: int) -> str | None:
        """The signed callback's last path segment for mac at generation (None before `load`)."""
        secret = self.secret
        if secret is None:
            return None
        key = (mac, generation)
        cached = self._credentials.get(key)
        if cached is not None and cached[0] is secret:
            return cached[1]
        if len(self._credentials) >= CREDENTIALS_KEPT:
            self._credentials.clear()
        credential = auth.callback_credential(secret, mac, generation)
        self._credentials[key] = (secret, credential)
        return credential

    def signer(self, state_of: Callable[[str], HostState]) -> Callable[[str], str | None]:
        """A Renderer.signer: MAC -> credential at its current generation (from state_of)."""

        def sign(mac: str) -> str | None:
            try:
                return self.credential(mac, state_of(mac).generation)
            except StateError:  # a broken state file: the URL stays unsigned (token only)
                return None

        return sign

    def verify(self, mac: str, generation: int, credential: str) -> str | None:
        """None for a valid signed callback; otherwise why it is refused."""
        if self.secret is None:
            return "the server secret is not loaded yet"
        return auth.verify_callback(self.secret, mac, generation, credential)

    async def token(self, request: web.Request) -> tuple[TokenRecord | None, str]:
        """The stored token the request's bearer header is, and why not when none."""
        presented = auth.bearer_token(request.headers.get("Authorization"))
        if presented is None:
            return None, "no bearer token"
        found = auth.match_token(presented, await self.store.tokens())
        return found, "" if found else "unknown or revoked token"

    async def start_session(self, token: TokenRecord) -> tuple[str, Session] | None:
        """A new status-page session for token, in the store (every instance knows it); returns
        the cookie value and the session, or None when the token was revoked meanwhile."""
        sid, now = auth.new_session_id(), time.time()
        record = SessionRecord(auth.token_digest(sid), token.name, now, now + auth.SESSION_SECONDS)
        if not await self.store.add_session(record, token.digest):
            return None
        csrf = auth.session_csrf(await self._secret(), sid)
        return sid, Session(token.name, record.digest, csrf, record.expires)

    async def session(self, request: web.Request) -> Session | None:
        """The request's live status-page session whose token still exists (from the cache,
        else the store), remembered on the request."""
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        digest, now, tick = auth.token_digest(sid), time.time(), time.monotonic()
        record = self.sessions.get(digest, now, tick)
        if record is None:
            epoch = self.sessions.epoch
            record = await self.store.session(digest, now)
            if record is None:
                return None
            self.sessions.put(record, tick, epoch)
        csrf = auth.session_csrf(await self._secret(), sid)
        session = Session(record.token_name, digest, csrf, record.expires)
        request[PAGE_SESSION] = session
        return session

    async def end_session(self, sid: str | None) -> None:
        """Sign out: the session ends in the store, so on every instance."""
        if sid:
            digest = auth.token_digest(sid)
            self.sessions.on_change(Change("session", digest))
            await self.store.end_session(digest)


GUARD: web.AppKey[Guard] = web.AppKey("guard", Guard)


def action_of(request: web.Request) -> tuple[str, str]:
    """(what, of what) for the audit trail: `reinstall`, MAC; else method and path."""
    found = _HOST_ACTION.fullmatch(request.path)
    if found:
        return found.group(2), found.group(1)
    if request.path.startswith("/status/sign"):
        return request.path.removeprefix("/status/"), ""
    return f"{request.method} {request.path}", ""


async def audit(
    request: web.Request, allowed: bool, reason: str = "", *, who: str | None = None
) -> None:
    """Write one audit record for this request (who defaults to whom the guard let in)."""
    action, target = action_of(request)
    record = AuditRecord(
        time=time.time(),
        who=request.get(WHO, "") if who is None else who,
        client=request.remote or "",
        action=action,
        target=target,
        allowed=allowed,
        reason=reason,
    )
    await write_audit(request.app[GUARD].store, record)


async def refuse(request: web.Request, status: int, reason: str, who: str = "") -> web.HTTPError:
    """Audit a refusal and build its response (raise it)."""
    request[NOTE] = reason
    await audit(request, False, reason, who=who)
    if status == 401:
        challenge = 'Bearer realm="pxelab"'
        if reason != "no bearer token":
            challenge += ', error="invalid_token"'
        return web.HTTPUnauthorized(
            text=f"401: {reason}: send Authorization: Bearer <token> (pxelab token create)\n",
            headers={"WWW-Authenticate": challenge},
        )
    return web.HTTPForbidden(text=f"403: {reason}\n")


async def _check_write(request: web.Request, guard: Guard) -> web.HTTPError | None:
    origin = request.headers.get("Origin")
    if not auth.same_origin(origin, request.host):
        return await refuse(
            request,
            403,
            f"cross-origin request from {(origin or '')[:80]!r} (a page of another site)",
        )
    path = request.path
    if SIGNED_CALLBACK_PATH.fullmatch(path):
        return None  # its handler checks the signature; machines have no TLS
    if guard.https_only and request.scheme != "https":
        return await refuse(request, 403, "state-changing requests need HTTPS (api_https_only)")
    if path == "/status/signin":
        return None  # the handler checks the token of the form
    if path.startswith("/status/"):  # the page's own forms: a session and its CSRF token
        session = await guard.session(request)
        if session is None:
            return await refuse(request, 403, "not signed in (or the session ended)")
        form = await request.post()
        presented = form.get("csrf")
        if not auth.csrf_ok(session, presented if isinstance(presented, str) else None):
            return await refuse(request, 403, "missing or wrong CSRF token", session.token_name)
        request[WHO] = session.token_name
        return None
    record, why = await guard.token(request)
    if record is None:
        return await refuse(request, 401, why)
    request[WHO] = record.name
    return None


async def _check_read(
    request: web.Request, guard: Guard
) -> web.HTTPError | web.HTTPSeeOther | None:
    record, why = await guard.token(request)
    if record is not None:
        request[WHO] = record.name
        return None
    if request.path != "/api/audit":
        session = await guard.session(request)
        if session is not None:
            request[WHO] = session.token_name
            return None
        if request.path == "/" and why == "no bearer token":
            request[NOTE] = "not signed in (api_auth = all)"
            return web.HTTPSeeOther("/status/signin")
    return await refuse(request, 401, why)


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse what the request may not do before its handler runs."""
    guard = request.app[GUARD]
    refusal: web.HTTPException | None = None
    try:
        if request.method in auth.UNSAFE_METHODS:
            refusal = await _check_write(request, guard)
        elif request.path == "/api/audit" or auth.read_needs_auth(request.path, guard.api_auth):
            refusal = await _check_read(request, guard)
    except StoreError as exc:
        log.error("cannot check credentials of %s %s: %s", request.method, request.path, exc)
        raise web.HTTPServiceUnavailable(text=f"the state store is unavailable: {exc}\n") from None
    if refusal is not None:
        raise refusal
    return await handler(request)


async def audit_list(request: web.Request) -> web.Response:
    """GET /api/audit[?limit=N]: the audit trail, oldest first (a bearer token only)."""
    try:
        limit = min(int(request.query.get("limit", AUDIT_SHOWN)), AUDIT_SHOWN)
    except ValueError:
        raise web.HTTPBadRequest(text="limit: expected a whole number\n") from None
    records = await request.app[GUARD].store.audit_records(limit)
    return web.json_response({"records": [asdict(r) for r in records]})


def install_guard(app: web.Application, guard: Guard | None) -> Guard:
    """Put the guard in front of every route of app, load its secret at start, add /api/audit."""
    guard = app[GUARD] = guard or Guard()
    app.middlewares.append(guard_middleware)

    async def _load(_: web.Application) -> None:
        await guard.load()

    app.on_startup.append(_load)
    app.router.add_get("/api/audit", audit_list)
    return guard

"""Status-page sign-in and sign-out: a token once, then an HttpOnly, SameSite=Strict cookie.

The cookie only lets the page's own forms act (each carries the session's CSRF token, checked by
the guard); the /api/* writes always need the bearer token itself.
"""

from __future__ import annotations

import html
import logging

from aiohttp import web

from pxelab.http import auth
from pxelab.http.auth import Session
from pxelab.http.guard import COOKIE, GUARD, PAGE_SESSION, WHO, audit
from pxelab.http.keys import NOTE
from pxelab.state import StoreError

log = logging.getLogger("pxelab.http")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pxelab: sign in</title><link rel="stylesheet" href="/status/status.css">
<link rel="icon" href="/status/favicon.svg" type="image/svg+xml"></head>
<body><header><h1>pxelab</h1><p class="meta"><a href="/">status page</a></p></header>
<main id="signin"><h2>Sign in</h2>{message}
<p class="muted">An API token (<code>pxelab token create NAME</code>) lets this browser use the
page's actions until you sign out, for 12 hours at most. The token is not kept in the browser.</p>
<form method="post" action="/status/signin">
<label>API token <input type="password" name="token" id="token" autocomplete="off" required></label>
<button type="submit">Sign in</button></form></main></body></html>
"""


async def page_session(request: web.Request) -> Session | None:
    """The request's live session (its token not revoked), remembered on the request; None
    when the store cannot say (the page is then shown signed out, read-only)."""
    if PAGE_SESSION in request:
        return request[PAGE_SESSION]
    try:
        return await request.app[GUARD].session(request)
    except StoreError as exc:
        log.warning("status page: cannot read the session: %s", exc)
        return None


def page_csrf(request: web.Request) -> str:
    """The CSRF token the page's forms carry; '' when signed out (then the page has no action)."""
    session = request.get(PAGE_SESSION)
    return session.csrf if session is not None else ""


def _page(message: str = "", status: int = 200) -> web.Response:
    text = _PAGE.format(message=f'<p class="problem">{html.escape(message)}</p>' if message else "")
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


async def signin_form(request: web.Request) -> web.Response:
    """GET /status/signin: ask for a token."""
    return _page()


async def signin(request: web.Request) -> web.StreamResponse:
    """POST /status/signin: a valid token starts a session (cookie) and goes back to the page."""
    guard = request.app[GUARD]
    form = await request.post()
    token = form.get("token")
    found = None
    if isinstance(token, str) and token.strip():
        found = auth.match_token(token.strip(), await guard.store.tokens())
    # the store makes the session only if the token is still there (not revoked meanwhile)
    started = None if found is None else await guard.start_session(found)
    if found is None or started is None:
        request[NOTE] = "sign-in refused"
        await audit(request, False, "unknown or revoked token")
        return _page("That token is unknown or revoked.", status=401)
    sid = started[0]
    request[WHO] = found.name
    request[NOTE] = f"signed in as {found.name}"
    await audit(request, True)
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        COOKIE,
        sid,
        max_age=auth.SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
    )
    raise response


async def signout(request: web.Request) -> web.StreamResponse:
    """POST /status/signout (the guard checked the session and its CSRF token): end it."""
    await request.app[GUARD].end_session(request.cookies.get(COOKIE))
    await audit(request, True)
    response = web.HTTPSeeOther("/")
    response.del_cookie(COOKIE, path="/")
    raise response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/status/signin", signin_form)
    app.router.add_post("/status/signin", signin)
    app.router.add_post("/status/signout", signout)

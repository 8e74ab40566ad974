"""Status-page sessions across instances and restarts, in process: apps with the real guard and
sign-in routes on stores sharing one database (SQLite file, or a real PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pxelab.http.auth import SessionCache, token_digest
from pxelab.http.guard import COOKIE, WHO, Guard, install_guard
from pxelab.http.session import add_routes, page_session
from pxelab.state import StateStore, TokenRecord
from pxelab.testing.postgres import PostgresCluster
from tests.state_backends import Backend

TOKEN = "pxl_test-token-of-the-operator-ops"
Client = TestClient[web.Request, web.Application]
Opener = Callable[[str], Awaitable[tuple[Client, StateStore]]]
ENDED_WITHIN = 15.0
"""Bounds a hang only: on SQLite the 1 s cache must expire, on PostgreSQL (a 60 s cache) the
NOTIFY must arrive; a loaded machine may take longer than the second either takes when idle."""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path)
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return Backend("postgres", tmp_path, cluster.create_database(), cluster)


async def _page(request: web.Request) -> web.Response:
    found = await page_session(request)
    return web.Response(text="signed out" if found is None else f"{found.token_name} {found.csrf}")


async def _act(request: web.Request) -> web.Response:
    return web.Response(text=f"done by {request[WHO]}")


@pytest.fixture
async def instance(backend: Backend) -> AsyncIterator[Opener]:
    """Opens an instance: its own store on the shared database and an app on it. On PostgreSQL
    its session cache is trusted for a minute: only the NOTIFY can end a session in time."""
    async with AsyncExitStack() as stack:

        async def open_instance(name: str) -> tuple[Client, StateStore]:
            store = backend.make(name)
            await store.open()
            stack.push_async_callback(store.close)
            guard = Guard(store)
            if backend.kind == "postgres":
                guard.sessions = SessionCache(seconds=60.0)
            app = web.Application()
            install_guard(app, guard)
            add_routes(app)
            app.router.add_get("/", _page)
            app.router.add_post("/status/hosts/{mac}/reinstall", _act)
            client: Client = TestClient(TestServer(app))
            await client.start_server()
            stack.push_async_callback(client.close)
            return client, store

        yield open_instance


async def _sign_in(client: Client, store: StateStore) -> dict[str, str]:
    if not await store.tokens():
        await store.add_token(TokenRecord("ops", token_digest(TOKEN), 0.0))
    response = await client.post("/status/signin", data={"token": TOKEN}, allow_redirects=False)
    assert response.status == 303, await response.text()
    client.session.cookie_jar.clear()  # every request below names its cookie
    return {"Cookie": f"{COOKIE}={response.cookies[COOKIE].value}"}


async def _who(client: Client, cookie: dict[str, str]) -> str:
    return await (await client.get("/", headers=cookie)).text()


async def _ended_within(client: Client, cookie: dict[str, str], limit: float) -> float:
    """Seconds until the instance shows the session signed out (fails past limit)."""
    start = time.monotonic()
    while await _who(client, cookie) != "signed out":
        assert time.monotonic() - start < limit, "the session still works"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_a_sign_in_on_one_instance_works_on_another_and_a_sign_out_there_ends_it(
    instance: Opener,
) -> None:
    (one, store), (two, _) = await instance("one"), await instance("two")
    cookie = await _sign_in(one, store)
    seen = await _who(one, cookie)
    assert seen.startswith("ops ")
    assert await _who(two, cookie) == seen  # the same session, the same CSRF token
    csrf = {"csrf": seen.split()[1]}
    acted = await two.post("/status/hosts/52:54:00:00:00:01/reinstall", data=csrf, headers=cookie)
    assert acted.status == 200 and await acted.text() == "done by ops"
    out = await two.post("/status/signout", data=csrf, headers=cookie, allow_redirects=False)
    assert out.status == 303
    assert await _who(two, cookie) == "signed out"
    await _ended_within(one, cookie, ENDED_WITHIN)  # its cache held it: told, or stale
    refused = await one.post("/status/hosts/52:54:00:00:00:01/reinstall", data=csrf, headers=cookie)
    assert refused.status == 403 and "not signed in" in await refused.text()


async def test_revoking_the_token_ends_its_sessions_on_every_instance(instance: Opener) -> None:
    (one, store), (two, _) = await instance("one"), await instance("two")
    cookie = await _sign_in(one, store)
    assert (await _who(one, cookie)).startswith("ops ")
    assert (await _who(two, cookie)).startswith("ops ")  # both have it cached now
    _, cli = await instance("cli")  # `pxelab token revoke ops`: another process on the store
    assert await cli.revoke_token("ops")
    await _ended_within(one, cookie, ENDED_WITHIN)
    await _ended_within(two, cookie, ENDED_WITHIN)


async def test_a_restart_keeps_a_session(instance: Opener, backend: Backend) -> None:
    one, store = await instance("one")
    cookie = await _sign_in(one, store)
    before = await _who(one, cookie)
    await one.close()
    await store.close()
    again, _ = await instance("one")  # the restarted daemon: a new store and app, same database
    assert await _who(again, cookie) == before
    csrf = {"csrf": before.split()[1]}
    acted = await again.post("/status/hosts/52:54:00:00:00:01/reinstall", data=csrf, headers=cookie)
    assert acted.status == 200 and await acted.text() == "done by ops"

"""The fleet's JSON API: GET /api/profiles (profiles, their selectors and the broken files) and
GET /api/hosts/seen (machines that asked to boot and that nothing serves yet).
"""

from __future__ import annotations

from aiohttp import web

from pxelab.hosts.fleet import Fleet
from pxelab.http.keys import INVENTORY, NOTE, STATE_STORE
from pxelab.state import SeenRecord, StoreError


async def profiles(request: web.Request) -> web.Response:
    """GET /api/profiles: every usable profile (name, file, selectors, keys) and broken ones."""
    fleet = request.app[INVENTORY]
    if not isinstance(fleet, Fleet):
        return web.json_response({"profiles": [], "broken_files": {}})
    body = {
        "profiles_dir": str(fleet.profile_set.directory),
        "profiles": [
            {
                "name": p.name,
                "source": p.source,
                "match": p.match.to_json() if p.match is not None else None,
                "specificity": list(p.match.specificity) if p.match is not None else None,
                "keys": dict(p.keys),
            }
            for p in fleet.profile_set.profiles()
        ],
        "broken_files": fleet.profile_set.errors,
    }
    return web.json_response(body)


async def seen_records(request: web.Request) -> list[SeenRecord]:
    """The stored machines seen whose MAC nothing serves now, most recently seen first."""
    store = request.app.get(STATE_STORE)
    if store is None:
        return []
    fleet = request.app[INVENTORY]
    try:
        records = await store.seen()
    except StoreError as exc:
        request[NOTE] = str(exc)
        raise web.HTTPServiceUnavailable(text=f"{exc}\n") from None
    return [r for r in records if fleet.lookup(r.mac) is None]


async def hosts_seen(request: web.Request) -> web.Response:
    """GET /api/hosts/seen: machines seen that no host file, profile or boot API covers."""
    records = await seen_records(request)
    return web.json_response({"seen": [r.to_json() for r in records]})


def add_routes(app: web.Application) -> None:
    """Add the fleet's routes (before /api/hosts/{mac}, which would take "seen" for a MAC)."""
    app.router.add_get("/api/hosts/seen", hosts_seen)
    app.router.add_get("/api/profiles", profiles)

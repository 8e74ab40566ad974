"""Per-host install data over HTTP: cloud-init NoCloud seeds, kickstart and preseed files.

`/cloud-init/<host>/{meta-data,user-data,network-config}`, `/kickstart/<host>`,
`/preseed/<host>`; <host> is the host's name or MAC. Errors are real HTTP errors (404, 500).
"""

from __future__ import annotations

import time

from aiohttp import web

from pxelab.boot.render import RenderError
from pxelab.events import Event
from pxelab.hosts.inventory import Host
from pxelab.http.keys import INVENTORY, NOTE, RENDERER, TIMELINE, base_url, remote

CLOUD_INIT = ("meta-data", "user-data", "network-config")
"""The NoCloud files served under each host's seed directory."""


def find_host(request: web.Request, key: str) -> Host:
    """The host a URL names by name or MAC; 404 naming it when there is none."""
    inventory = request.app[INVENTORY]
    host = inventory.by_name(key) or inventory.lookup(key)
    if host is None:
        request[NOTE] = "unknown host"
        raise web.HTTPNotFound(text=f"no host named {key!r} (by name or MAC)\n")
    return host


def _render(request: web.Request, host: Host, name: str) -> web.Response:
    try:
        text = request.app[RENDERER].install_data(host, base_url(request), name)
    except RenderError as exc:
        request[NOTE] = str(exc)
        raise web.HTTPInternalServerError(text=f"{exc}\n") from None
    request[NOTE] = f"host {host.name}"
    event = Event(
        time.time(), "install-data", mac=host.mac, ip=remote(request), file=name, path=request.path
    )
    request.app[TIMELINE].record(event)
    return web.Response(text=text, content_type="text/plain")


async def cloud_init(request: web.Request) -> web.Response:
    """GET /cloud-init/<host>/<meta-data|user-data|network-config>."""
    host = find_host(request, request.match_info["host"])
    return _render(request, host, request.match_info["name"])


async def kickstart(request: web.Request) -> web.Response:
    """GET /kickstart/<host>: Anaconda's kickstart (inst.ks=)."""
    return _render(request, find_host(request, request.match_info["host"]), "kickstart")


async def preseed(request: web.Request) -> web.Response:
    """GET /preseed/<host>: the Debian installer's preseed (url=)."""
    return _render(request, find_host(request, request.match_info["host"]), "preseed")


def add_routes(app: web.Application) -> None:
    names = "|".join(CLOUD_INIT)
    app.router.add_get(f"/cloud-init/{{host}}/{{name:(?:{names})}}", cloud_init)
    app.router.add_get("/kickstart/{host}", kickstart)
    app.router.add_get("/preseed/{host}", preseed)

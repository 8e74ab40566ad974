"""The HTTP side: per-host iPXE scripts from memory, and images streamed with sendfile.

Routes here: /boot?mac= (and /ipxe?mac=), /boot.ipxe, /images/… and /tftp/… (GET, HEAD, Range),
/metrics; install data in `pxelab.http.install`, the JSON API in `pxelab.http.api`, the status
page (`/`) in `pxelab.http.status`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pxelab.boot.explain import DhcpHandout
from pxelab.boot.images import ImageIndex
from pxelab.boot.loaders import LoaderWatch
from pxelab.boot.render import Renderer, RenderError
from pxelab.boot.rules import boots_from_disk, image_path
from pxelab.events import Event, Timeline
from pxelab.hosts.install import InstallStore, StateError
from pxelab.hosts.inventory import Inventory, normalize_mac
from pxelab.http.api import add_routes as add_api_routes
from pxelab.http.fleet_api import add_routes as add_fleet_routes
from pxelab.http.guard import Guard, install_guard
from pxelab.http.install import add_routes as add_install_routes
from pxelab.http.keys import (
    HANDOUT,
    IMAGES_DIR,
    INSTALL_STORE,
    INVENTORY,
    LOADERS,
    NOTE,
    RENDERER,
    STATE_STORE,
    TFTP_ROOT,
    TIMELINE,
    base_url,
    remote,
)
from pxelab.http.metrics import METRICS, Metrics, metrics_page, route_name
from pxelab.http.status import add_routes as add_status_routes
from pxelab.paths import PathRefused, regular_file
from pxelab.state import StateStore

__all__ = [
    "IMAGES_DIR",
    "INSTALL_STORE",
    "INVENTORY",
    "IPXE_TYPE",
    "METRICS",
    "NOTE",
    "RENDERER",
    "TFTP_ROOT",
    "TIMELINE",
    "AccessLogger",
    "base_url",
    "confined",
    "confined_file",
    "make_app",
]

log = logging.getLogger("pxelab.http")

IPXE_TYPE = "text/plain"
ACCESS_FORMAT = "%s %s %s %d %dB %.3fs%s"
"""One access log line: client, method, path and query, status, bytes, seconds, (note)."""


async def boot_script(request: web.Request) -> web.Response:
    """GET /boot?mac=…: that host's iPXE script (its installer, or local boot once installed)."""
    raw = request.query.get("mac", "").strip()
    if not raw:
        raise web.HTTPBadRequest(text="missing query parameter: mac\n")
    try:
        mac = normalize_mac(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    app = request.app
    host = app[INVENTORY].lookup(mac)
    if host is None:
        request[NOTE] = "unknown host"
        raise web.HTTPNotFound(text=f"no host with mac {mac}\n")
    base = base_url(request)
    renderer = app[RENDERER]
    try:
        state = app[INSTALL_STORE].get(mac).state
        script = renderer.boot_script(host, base, state)
    except (RenderError, StateError) as exc:
        request[NOTE] = str(exc)
        raise web.HTTPInternalServerError(text=f"{exc}\n") from None
    installed = boots_from_disk(state)
    request[NOTE] = f"host {host.name}, installed: local boot" if installed else f"host {host.name}"
    now, ip, path = time.time(), remote(request), request.path
    if installed:
        event = Event(now, "local-boot", mac=mac, ip=ip, path=path, state=state.value)
    else:
        template = renderer.boot_template(host, state)
        event = Event(now, "script", mac=mac, ip=ip, path=path, template=template)
    app[TIMELINE].record(event)
    return web.Response(text=script, content_type=IPXE_TYPE)


async def chain_script(request: web.Request) -> web.Response:
    """GET /boot.ipxe: the generic script that chains to the per-MAC one."""
    try:
        script = request.app[RENDERER].chain_script(base_url(request))
    except RenderError as exc:
        request[NOTE] = str(exc)
        raise web.HTTPInternalServerError(text=f"{exc}\n") from None
    event = Event(time.time(), "ipxe", ip=remote(request), path=request.path)
    request.app[TIMELINE].record(event)
    return web.Response(text=script, content_type=IPXE_TYPE)


def confined(root: Path, relative: str) -> Path | None:
    """The regular file `relative` names inside root, or None (blocking: stats the path).

    The rule TFTP applies too (`pxelab.paths`): no `..`, NUL, backslash, hidden component
    (partial downloads wait in <images>/.incoming/), over-long name or symlink that leads out.
    """
    try:
        return regular_file(root, relative)
    except (PathRefused, OSError, ValueError):
        return None


async def confined_file(root: Path, relative: str) -> Path | None:
    """`confined`, run in a worker thread: nothing stats files on the event loop."""
    return await asyncio.to_thread(confined, root, relative)


def image_stage(
    inventory: Inventory, mac: str, relative: str, images: ImageIndex | None = None
) -> str:
    """Timeline stage of an image request: kernel, initrd or iso of the host at mac, else image."""
    host = inventory.lookup(mac) if mac else None
    if host is None or not host.distro:
        return "image"
    for stage, name in (("kernel", host.kernel), ("initrd", host.initrd), ("iso", host.iso)):
        if name and relative == image_path(host, name, images):
            return stage
    return "image"


def range_unsatisfiable(request: web.Request, size: int, mtime: float) -> bool:
    """aiohttp's FileResponse would answer 416 (with an empty body): the same rule, decided
    first, so the 416 can carry its one-line text."""
    if_range = request.if_range
    if if_range is not None and mtime > if_range.timestamp():
        return False  # If-Range no longer matches: the whole file, 200
    try:
        wanted = request.http_range
    except ValueError:
        return True
    start, end = wanted.start, wanted.stop
    if start is None or (start < 0 and end is None):
        return False
    return bool(start >= size)


def _stat_confined(root: Path, relative: str) -> tuple[Path, os.stat_result] | None:
    path = confined(root, relative)
    if path is None:
        return None
    try:
        return path, path.stat()
    except OSError:
        return None


async def _file_or_404(request: web.Request, root: Path, where: str) -> tuple[str, Path]:
    """The request's {path} as a file confined to root (the shared rule), or a 404; a 416 with
    its line when the Range cannot be served."""
    relative = request.match_info["path"]
    found = await asyncio.to_thread(_stat_confined, root, relative)
    if found is None:
        request[NOTE] = f"not a file inside the {where}"
        raise web.HTTPNotFound(text=f"no file {relative} in the {where}\n")
    path, st = found
    if range_unsatisfiable(request, st.st_size, st.st_mtime):
        request[NOTE] = "range not satisfiable"
        asked = request.headers.get("Range", "")[:80]
        raise web.HTTPRequestRangeNotSatisfiable(
            text=f"range {asked!r} is not satisfiable: {relative} has {st.st_size} bytes\n",
            headers={"Content-Range": f"bytes */{st.st_size}"},
        )
    return relative, path


async def image_file(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /images/…: a file from the images dir, with Range, by sendfile."""
    relative, path = await _file_or_404(request, request.app[IMAGES_DIR], "images dir")
    if request.method == "GET":
        timeline, ip = request.app[TIMELINE], remote(request)
        inventory, images = request.app[INVENTORY], request.app[RENDERER].images
        stage = image_stage(inventory, timeline.mac_at(ip), relative, images)
        timeline.record(Event(time.time(), stage, ip=ip, path=f"/images/{relative}"))
    return web.FileResponse(path, chunk_size=256 * 1024)


async def tftp_file(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /tftp/…: a file from the TFTP root (for UEFI HTTP boot clients), by sendfile."""
    relative, path = await _file_or_404(request, request.app[TFTP_ROOT], "TFTP root")
    if request.method == "GET":
        event = Event(time.time(), "http-boot", ip=remote(request), path=f"/tftp/{relative}")
        request.app[TIMELINE].record(event)
    return web.FileResponse(path, chunk_size=256 * 1024)


async def _count_response(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: count every response (errors too) and its body bytes."""
    sent = 0
    if request.method != "HEAD":
        sent = response.content_length or response.body_length
    request.app[METRICS].on_response(route_name(request), response.status, sent)


def make_app(
    inventory: Inventory,
    renderer: Renderer,
    images_dir: Path,
    timeline: Timeline | None = None,
    *,
    install_store: InstallStore | None = None,
    tftp_root: Path | None = None,
    metrics: Metrics | None = None,
    guard: Guard | None = None,
    store: StateStore | None = None,
    handout: DhcpHandout | None = None,
    loaders: LoaderWatch | None = None,
) -> web.Application:
    """The aiohttp application; the caller runs it.

    Without install_store, install states live in memory. With tftp_root, /tftp/ serves it
    (and explain says whether boot files exist). The guard (pxelab.http.guard) checks every
    request first and signs the renderer's install callbacks; without one no write is allowed.
    `handout` is what the daemon's DHCP hands out, for explain (default: DhcpHandout()); with
    `loaders`, its boot files follow the TFTP root as DHCP's do.
    Add options as keyword-only arguments.
    """
    app = web.Application()
    app[TIMELINE] = timeline or Timeline()
    app[INVENTORY] = inventory
    app[RENDERER] = renderer
    app[IMAGES_DIR] = images_dir
    app[INSTALL_STORE] = install_store or InstallStore()
    if store is not None:
        app[STATE_STORE] = store
    app[METRICS] = metrics or Metrics()
    app[HANDOUT] = handout or DhcpHandout()
    if loaders is not None:
        app[LOADERS] = loaders
    renderer.signer = install_guard(app, guard).signer(app[INSTALL_STORE].get)
    unsubscribe = app[TIMELINE].subscribe(app[METRICS].on_event)

    async def _unsubscribe(_: web.Application) -> None:
        unsubscribe()

    app.on_cleanup.append(_unsubscribe)
    app.on_response_prepare.append(_count_response)
    app.router.add_get("/boot", boot_script)
    app.router.add_get("/ipxe", boot_script)  # pvmlab's name for the same script
    app.router.add_get("/boot.ipxe", chain_script)
    app.router.add_get("/images/{path:.+}", image_file)  # add_get also routes HEAD
    if tftp_root is not None:
        app[TFTP_ROOT] = tftp_root
        app.router.add_get("/tftp/{path:.+}", tftp_file)  # UEFI HTTP boot gets iPXE here
    app.router.add_get("/metrics", metrics_page)
    add_install_routes(app)
    add_fleet_routes(app)
    add_api_routes(app)
    add_status_routes(app)  # GET /, the status page
    return app


class AccessLogger(AbstractAccessLogger):
    """One line per request, after it is sent: client, request, status, bytes, time, note."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        note = request.get(NOTE, "")
        sent = response.body_length  # sendfile bytes are not counted there: use the length
        if request.method != "HEAD" and response.content_length is not None:
            sent = response.content_length
        level = logging.ERROR if response.status >= 500 else logging.INFO
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        args = (
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            sent,
            time,
            f" ({note})" if note else "",
        )
        # makeRecord + handle is Logger.log without its stack walk for the caller's file and line
        record = logger.makeRecord(logger.name, level, "", 0, ACCESS_FORMAT, args, None)
        logger.handle(record)

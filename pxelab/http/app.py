"""The HTTP side: per-host iPXE scripts from memory, and images streamed with sendfile.

Routes: /boot?mac= (and /ipxe?mac=), /boot.ipxe, /images/… (GET, HEAD, Range).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path, PurePosixPath

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from pxelab.events import Timeline
from pxelab.inventory import Inventory, normalize_mac
from pxelab.render import Renderer, RenderError

log = logging.getLogger("pxelab.http")

IPXE_TYPE = "text/plain"
NOTE: web.RequestKey[str] = web.RequestKey("note", str)
"""Request key for what the access log line should add (host name, reason of an error)."""

INVENTORY: web.AppKey[Inventory] = web.AppKey("inventory", Inventory)
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer", Renderer)
IMAGES_DIR: web.AppKey[Path] = web.AppKey("images_dir", Path)
TIMELINE: web.AppKey[Timeline] = web.AppKey("timeline", Timeline)
TFTP_ROOT: web.AppKey[Path] = web.AppKey("tftp_root", Path)


def base_url(request: web.Request) -> str:
    """The scheme and host the client used to reach us, so scripts point back the same way."""
    return f"{request.scheme}://{request.host}"


async def boot_script(request: web.Request) -> web.Response:
    """GET /boot?mac=…: that host's iPXE script."""
    raw = request.query.get("mac", "").strip()
    if not raw:
        raise web.HTTPBadRequest(text="missing query parameter: mac\n")
    try:
        mac = normalize_mac(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    host = request.app[INVENTORY].lookup(mac)
    if host is None:
        request[NOTE] = "unknown host"
        raise web.HTTPNotFound(text=f"no host with mac {mac}\n")
    try:
        script = request.app[RENDERER].boot_script(host, base_url(request))
    except RenderError as exc:
        request[NOTE] = str(exc)
        raise web.HTTPInternalServerError(text=f"{exc}\n") from None
    request[NOTE] = f"host {host.name}"
    request.app[TIMELINE].record(
        time.time(), "script", f"boot script {request.path}", mac=mac, ip=request.remote or ""
    )
    return web.Response(text=script, content_type=IPXE_TYPE)


async def chain_script(request: web.Request) -> web.Response:
    """GET /boot.ipxe: the generic script that chains to the per-MAC one."""
    try:
        script = request.app[RENDERER].chain_script(base_url(request))
    except RenderError as exc:
        request[NOTE] = str(exc)
        raise web.HTTPInternalServerError(text=f"{exc}\n") from None
    return web.Response(text=script, content_type=IPXE_TYPE)


def confined(root: Path, relative: str) -> Path | None:
    """The file `relative` names under root, or None if it is not a regular file inside root."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p in ("..", ".", "") or "\x00" in p or "\\" in p for p in parts):
        return None
    if relative.startswith("/"):
        return None
    real_root = root.resolve()
    candidate = (real_root / relative).resolve()
    if not candidate.is_relative_to(real_root) or not candidate.is_file():
        return None
    return candidate


async def image_file(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /images/…: a file from the images dir, with Range, by sendfile."""
    relative = request.match_info["path"]
    path = confined(request.app[IMAGES_DIR], relative)
    if path is None:
        request[NOTE] = "not a file inside the images dir"
        raise web.HTTPNotFound(text=f"no image {relative}\n")
    return web.FileResponse(path, chunk_size=256 * 1024)


async def tftp_file(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /tftp/…: a file from the TFTP root (for UEFI HTTP boot clients), by sendfile."""
    relative = request.match_info["path"]
    path = confined(request.app[TFTP_ROOT], relative)
    if path is None:
        request[NOTE] = "not a file inside the TFTP root"
        raise web.HTTPNotFound(text=f"no file {relative} in the TFTP root\n")
    if request.method == "GET":
        ip = request.remote or ""
        request.app[TIMELINE].record(time.time(), "http-boot", f"/tftp/{relative}", ip=ip)
    return web.FileResponse(path, chunk_size=256 * 1024)


def make_app(
    inventory: Inventory,
    renderer: Renderer,
    images_dir: Path,
    timeline: Timeline | None = None,
    *,
    tftp_root: Path | None = None,
) -> web.Application:
    """The aiohttp application; the caller runs it. With tftp_root, /tftp/ serves it."""
    app = web.Application()
    app[TIMELINE] = timeline or Timeline()
    app[INVENTORY] = inventory
    app[RENDERER] = renderer
    app[IMAGES_DIR] = images_dir
    app.router.add_get("/boot", boot_script)
    app.router.add_get("/ipxe", boot_script)  # pvmlab's name for the same script
    app.router.add_get("/boot.ipxe", chain_script)
    app.router.add_get("/images/{path:.+}", image_file)  # add_get also routes HEAD
    if tftp_root is not None:
        app[TFTP_ROOT] = tftp_root
        app.router.add_get("/tftp/{path:.+}", tftp_file)  # UEFI HTTP boot gets iPXE here
    return app


class AccessLogger(AbstractAccessLogger):
    """One line per request, after it is sent: client, request, status, bytes, time, note."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        note = request.get(NOTE, "")
        sent = response.body_length  # sendfile bytes are not counted there: use the length
        if request.method != "HEAD" and response.content_length is not None:
            sent = response.content_length
        level = logging.ERROR if response.status >= 500 else logging.INFO
        self.logger.log(
            level,
            "%s %s %s %d %dB %.3fs%s",
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            sent,
            time,
            f" ({note})" if note else "",
        )

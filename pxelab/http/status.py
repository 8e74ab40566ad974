"""The status page at `GET /`: hosts, boot timelines, assets and errors, live through SSE.

Server-rendered HTML (works with JavaScript off); `/status/events` streams each timeline event as
ready-made HTML pieces rendered by the same Jinja macros; one write action, reinstall a host.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from pxelab.assets import AssetError
from pxelab.assets.store import CachedFile, list_cache, read_manifest
from pxelab.boot.rules import image_choice, is_url
from pxelab.events import Event
from pxelab.hosts.install import StateError
from pxelab.hosts.inventory import Host, normalize_mac
from pxelab.http import api, session
from pxelab.http.fleet_api import seen_records
from pxelab.http.keys import IMAGES_DIR, INSTALL_STORE, INVENTORY, NOTE, RENDERER, TIMELINE

EVENTS_SHOWN = 50
"""Events per host on the page (newest first); the API has them all."""
PROBLEMS_KEPT = 50
"""Problem events remembered for "Recent errors" (since the daemon started)."""
CLIENT_QUEUE = 1000
"""Events waiting for one slow browser; past that its stream ends (it reconnects, re-reads)."""
HEARTBEAT = 15.0
"""Seconds between SSE comments: they find browsers that went away."""
ASSET_PROBLEMS = ("CHANGED", "MISSING", "BROKEN", "partial download", "not in manifest")
"""`pxelab assets list` states that go to "Recent errors"."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
"""Nothing but this server's own files, scripts, styles and forms; no framing."""


LOG_ERROR = 3
"""Syslog severity `err`: installer lines at this severity or worse are highlighted."""


def is_problem(event: Event) -> bool:
    """An event that belongs in "Recent errors": stage error, DHCP NAK, a failed TFTP transfer."""
    if event.stage == "error":
        return True
    if event.stage == "log":
        return event.severity is not None and event.severity <= LOG_ERROR
    if event.stage == "dhcp":
        return event.message_type == "NAK"
    if event.stage == "tftp":
        return event.outcome is not None and event.outcome.result in ("failed", "refused")
    return False


BOOT_STEPS = (
    ("DHCP", ("dhcp",)),
    ("TFTP", ("tftp", "http-boot")),
    ("iPXE", ("ipxe",)),
    ("script", ("script", "local-boot")),
    ("kernel", ("kernel",)),
    ("initrd", ("initrd",)),
    ("install data", ("install-data",)),
    ("installed", ("installed",)),
)
"""The steps of a boot, as the page's progress strip shows them, and the stages of each."""
_RANK = {"dhcp": 0, "tftp": 1, "http-boot": 1, "ipxe": 2, "script": 3, "local-boot": 3}
_RANK |= {"kernel": 4, "initrd": 5, "iso": 6, "image": 6, "install-data": 7, "installed": 8}
"""How far into a boot a stage is; reinstall and error are no step of a boot."""


def current_boot(events: list[Event]) -> list[Event]:
    """The events of the latest boot: a boot starts again when a stage up to the script comes
    after the script or later (iPXE's own DHCP after TFTP is the same boot)."""
    start, furthest = 0, -1
    for i, event in enumerate(events):
        rank = _RANK.get(event.stage)
        if rank is None:
            continue
        if rank <= 3 and furthest >= 3 and rank < furthest:
            start, furthest = i, -1
        furthest = max(furthest, rank)
    return events[start:]


def boot_progress(events: list[Event]) -> list[tuple[str, bool]]:
    """(step, reached in the latest boot) for each of BOOT_STEPS."""
    seen = {e.stage for e in current_boot(events)}
    return [(label, any(s in seen for s in stages)) for label, stages in BOOT_STEPS]


def _key(mac: str) -> str:
    return mac.replace(":", "-")


def _hms(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _stage_class(stage: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "_" for c in stage)


def _environment() -> jinja2.Environment:
    files = resources.files("pxelab.http") / "static"
    names = ("status.html.j2", "status_macros.html.j2")
    env = jinja2.Environment(
        loader=jinja2.DictLoader({n: (files / n).read_text(encoding="utf-8") for n in names}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(hms=_hms, iso=_iso, ago=_ago, size=_size, stage_class=_stage_class)
    env.filters["is_problem"] = is_problem
    return env


def _static(name: str) -> bytes:
    return (resources.files("pxelab.http") / "static" / name).read_bytes()


@dataclass(frozen=True)
class Problem:
    """One line of "Recent errors"."""

    what: str
    """Where: a host file, a state file, an asset, or the machine (MAC or IP) and stage."""
    detail: str
    """What was wrong."""
    time: float | None = None
    """When, for events; None for things found on disk."""


class StatusHub:
    """The page's one timeline listener: remembers problem events, fans events out to browsers."""

    def __init__(self) -> None:
        self.problems: deque[Event] = deque(maxlen=PROBLEMS_KEPT)
        self._clients: set[asyncio.Queue[Event | None]] = set()

    def on_event(self, event: Event) -> None:
        """Timeline listener (called on the event loop, inside `Timeline.record`)."""
        if is_problem(event):
            self.problems.append(event)
        for queue in list(self._clients):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stalled browser: end its stream, it reconnects
                self._clients.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def join(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[Event | None]) -> None:
        self._clients.discard(queue)

    @property
    def clients(self) -> int:
        return len(self._clients)

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        for queue in self._clients:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)
        self._clients.clear()


STATUS_HUB: web.AppKey[StatusHub] = web.AppKey("status_hub", StatusHub)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("status_templates", jinja2.Environment)


def _kernel_view(request: web.Request, host: Host) -> dict[str, Any] | None:
    """Where the host's kernel is served from (the images index, from memory), or None."""
    if not host.distro or is_url(host.kernel):
        return None
    choice = image_choice(host, host.kernel, request.app[RENDERER].images)
    return {"path": choice.path, "found": choice.found, "tried": choice.tried}


def _host_view(request: web.Request, host: Host) -> dict[str, Any]:
    try:
        state, error = request.app[INSTALL_STORE].get(host.mac).state.value, ""
    except StateError as exc:
        state, error = None, str(exc)
    return {
        "key": _key(host.mac),
        "name": host.name,
        "mac": host.mac,
        "arch": host.arch,
        "distro": host.distro,
        "kernel": _kernel_view(request, host),
        "state": state,
        "state_error": error,
        "last": request.app[TIMELINE].last(host.mac),
        "csrf": session.page_csrf(request),  # '' signed out: no action
    }


def _unknown_view(mac: str, last: Event | None) -> dict[str, Any]:
    return {"key": _key(mac), "mac": mac, "last": last}


def _timeline_view(mac: str, title: str, events: list[Event]) -> dict[str, Any]:
    shown = events[-EVENTS_SHOWN:][::-1]
    return {
        "key": _key(mac),
        "mac": mac,
        "title": title,
        "events": shown,
        "count": len(events),
        "progress": boot_progress(events),
        "limit": EVENTS_SHOWN,
    }


def _event_problem(event: Event) -> Problem:
    who = event.mac or event.ip or "?"
    return Problem(f"{who} {event.stage}", event.detail, event.time)


def _problems(request: web.Request, assets: list[Any]) -> list[Problem]:
    """Recent problem events (newest first), then broken host and state files, then assets."""
    found = [_event_problem(e) for e in reversed(request.app[STATUS_HUB].problems)]
    for path, error in sorted(request.app[INVENTORY].errors.items()):
        found.append(Problem(f"host file {path}", error.removeprefix(f"{path}: ")))
    for host in request.app[INVENTORY].hosts():
        try:
            request.app[INSTALL_STORE].get(host.mac)
        except StateError as exc:
            found.append(Problem(f"install state of {host.name}", str(exc)))
    for row in assets:
        if row.state.startswith(ASSET_PROBLEMS):
            found.append(Problem(f"asset {row.distro}/{row.arch}/{row.name}", row.state))
    return found


def _assets(request: web.Request) -> tuple[list[Any], list[dict[str, str]]]:
    """`pxelab assets list` rows, and where each manifest's files came from and when."""
    images = request.app[IMAGES_DIR]
    try:
        rows = list_cache(images)
    except OSError as exc:  # the page still shows everything else
        return [CachedFile("?", "?", str(images), 0, f"BROKEN (cannot read: {exc})")], []
    sources = []
    for distro, arch in sorted({(r.distro, r.arch) for r in rows}):
        try:
            manifest = read_manifest(images / distro / arch)
        except AssetError:
            continue  # list_cache already shows it as BROKEN
        if manifest is not None:
            source = manifest.source
            if "://" in source:
                parts = urlsplit(source)
                source = f"{parts.netloc}{parts.path}"
            sources.append(
                {
                    "distro": distro,
                    "arch": arch,
                    "source": source,
                    "fetched_at": manifest.fetched_at,
                }
            )
    return rows, sources


async def status_page(request: web.Request) -> web.Response:
    """GET /: the whole page, a snapshot that needs no JavaScript."""
    inventory, timeline = request.app[INVENTORY], request.app[TIMELINE]
    signed_in = await session.page_session(request)
    assets, sources = await asyncio.to_thread(_assets, request)
    hosts = inventory.hosts()
    try:
        seen = await seen_records(request)
    except web.HTTPException:
        seen = []
    known = {h.mac for h in hosts}
    unknown = [m for m in reversed(timeline.macs()) if m not in known]
    served = [h for m in unknown if (h := inventory.lookup(m)) is not None]  # profile, boot API
    hosts += served
    unknown = [m for m in unknown if m not in {h.mac for h in served}]
    timelines = [
        _timeline_view(h.mac, h.name, timeline.events(h.mac)) for h in hosts if timeline.last(h.mac)
    ]
    timelines += [_timeline_view(m, "not in the inventory", timeline.events(m)) for m in unknown]
    html = (
        request.app[TEMPLATES]
        .get_template("status.html.j2")
        .render(
            now=time.time(),
            hosts=[_host_view(request, h) for h in hosts],
            unknown=[_unknown_view(m, timeline.last(m)) for m in unknown],
            seen=seen,
            timelines=timelines,
            problems=_problems(request, assets),
            problem_limit=PROBLEMS_KEPT,
            assets=assets,
            sources=sources,
            hosts_dir=inventory.directory,
            images_dir=request.app[IMAGES_DIR],
            session=signed_in,
        )
    )
    return web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)


def update_message(request: web.Request, event: Event) -> dict[str, Any]:
    """One live update: the event's host row, its timeline item (and a whole timeline, for a
    MAC the page has none of yet) and its "Recent errors" line, as HTML."""
    macros: Any = request.app[TEMPLATES].get_template("status_macros.html.j2").module
    now = time.time()
    message: dict[str, Any] = {"key": _key(event.mac) if event.mac else "", "stage": event.stage}
    message["problem"] = (
        str(macros.problem_item(_event_problem(event))) if is_problem(event) else ""
    )
    if not event.mac:
        return message
    host = request.app[INVENTORY].lookup(event.mac)
    message["known"] = host is not None
    if host is not None:
        message["row"] = str(macros.host_row(_host_view(request, host), now))
        title = host.name
    else:
        message["row"] = str(macros.unknown_row(_unknown_view(event.mac, event), now))
        title = "not in the inventory"
    message["item"] = str(macros.event_item(event))
    events = request.app[TIMELINE].events(event.mac)
    message["timeline"] = str(macros.timeline(_timeline_view(event.mac, title, events)))
    return message


async def status_events(request: web.Request) -> web.StreamResponse:
    """GET /status/events: server-sent events, one `boot` message per timeline event."""
    hub = request.app[STATUS_HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await session.page_session(request)  # rows carry its CSRF token, or no action
    await response.prepare(request)
    queue = hub.join()
    request[NOTE] = "status stream"
    try:
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            data = json.dumps(update_message(request, event))
            await response.write(f"event: boot\ndata: {data}\n\n".encode())
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        hub.leave(queue)
    return response


def _same_origin(request: web.Request) -> bool:
    """A form POST from this page: a browser's Origin header, when sent, names this server."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # curl, older browsers
    return origin != "null" and urlsplit(origin).netloc == request.host


async def reinstall_form(request: web.Request) -> web.StreamResponse:
    """POST /status/hosts/<mac>/reinstall: the page's form; back to the page (JSON for its
    JavaScript). The guard let it in: a signed-in session and its CSRF token."""
    if not _same_origin(request):
        request[NOTE] = "cross-origin form"
        raise web.HTTPForbidden(text="reinstall refused: the form was posted from another site\n")
    result = await api.reinstall(request)  # the API's own handler: same change, same event
    if "application/json" in request.headers.get("Accept", ""):
        return result  # the page's JavaScript: it stays on the page
    mac = normalize_mac(request.match_info["mac"])
    raise web.HTTPSeeOther(f"/#host-{_key(mac)}")


def _asset_handler(
    name: str, content_type: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler for one of the page's files, served from memory."""
    body = _static(name)

    async def handler(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=body, content_type=content_type, headers=headers)

    return handler


def add_routes(app: web.Application) -> None:
    """The page, its CSS and JS, its event stream and its form; call after TIMELINE is set."""
    hub = app[STATUS_HUB] = StatusHub()
    app[TEMPLATES] = _environment()
    unsubscribe = app[TIMELINE].subscribe(hub.on_event)

    async def _close(_: web.Application) -> None:
        hub.close()  # before aiohttp waits for open handlers: streams end now
        unsubscribe()

    app.on_shutdown.append(_close)
    app.router.add_get("/", status_page)
    app.router.add_get("/status/status.css", _asset_handler("status.css", "text/css"))
    app.router.add_get("/status/status.js", _asset_handler("status.js", "text/javascript"))
    app.router.add_get("/status/favicon.svg", _asset_handler("favicon.svg", "image/svg+xml"))
    app.router.add_get("/status/events", status_events)
    app.router.add_post("/status/hosts/{mac}/reinstall", reinstall_form)
    session.add_routes(app)  # /status/signin, /status/signout

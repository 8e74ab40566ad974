"""What the HTTP handlers share: the app keys, the request note, and the client's base URL.

`METRICS` lives in `pxelab.http.metrics`, beside the counters and the page that read it."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from aiohttp import web

from pxelab.boot.explain import DhcpHandout
from pxelab.boot.loaders import LoaderWatch
from pxelab.boot.render import Renderer
from pxelab.events import Timeline
from pxelab.hosts.install import InstallStore
from pxelab.hosts.inventory import Inventory
from pxelab.state import StateStore

NOTE: web.RequestKey[str] = web.RequestKey("note", str)
"""Request key for what the access log line should add (host name, reason of an error)."""

INVENTORY: web.AppKey[Inventory] = web.AppKey("inventory", Inventory)
RENDERER: web.AppKey[Renderer] = web.AppKey("renderer", Renderer)
IMAGES_DIR: web.AppKey[Path] = web.AppKey("images_dir", Path)
TIMELINE: web.AppKey[Timeline] = web.AppKey("timeline", Timeline)
INSTALL_STORE: web.AppKey[InstallStore] = web.AppKey("install_store", InstallStore)
STATE_STORE: web.AppKey[StateStore] = web.AppKey("state_store")
"""The state store, when the app has one: leases and the events of every instance."""
TFTP_ROOT: web.AppKey[Path] = web.AppKey("tftp_root", Path)
"""The TFTP root, when the app knows it (explain says whether boot files exist)."""

HANDOUT: web.AppKey[DhcpHandout] = web.AppKey("handout", DhcpHandout)
"""What the daemon's DHCP hands out (boot files, DNS), for explain."""
LOADERS: web.AppKey[LoaderWatch] = web.AppKey("loaders", LoaderWatch)
"""The daemon's view of the TFTP root's loaders, when it has one: explain's boot files follow
it, as DHCP's do."""

_HOST_HEADER = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
"""A Host header that is safe to put in scripts, kernel lines and YAML."""


def base_url(request: web.Request) -> str:
    """The scheme and host the client used to reach us, so scripts point back the same way.

    The Host header reaches iPXE scripts and installer files: anything but a plain host[:port]
    is refused with 400, so no client can inject commands through it.
    """
    host = request.host
    url = _base(request.scheme, host)
    if url is None:
        request[NOTE] = "bad Host header"
        raise web.HTTPBadRequest(text=f"bad Host header: {host[:80]!r}\n")
    return url


@functools.lru_cache(maxsize=1024)
def _base(scheme: str, host: str) -> str | None:
    """`scheme://host`, or None for an unsafe Host (memoised: every boot request asks)."""
    return f"{scheme}://{host}" if _HOST_HEADER.fullmatch(host) else None


def remote(request: web.Request) -> str:
    """The client's address, or '' when the transport does not say."""
    return request.remote or ""

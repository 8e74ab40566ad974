"""The JSON API: hosts and their stage, boot timelines, the install callback, explain.

GET /api/hosts, GET /api/hosts/<mac>, GET /api/hosts/<mac>/events,
POST /api/hosts/<mac>/installed (a token) or …/installed/<generation>.<signature> (signed),
POST /api/hosts/<mac>/reinstall, GET /api/explain/<mac>?arch=; who may write: pxelab.http.guard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from aiohttp import web

from pxelab.boot.explain import DhcpHandout, explain
from pxelab.dhcp.leases import Lease
from pxelab.dhcp6.leases import Lease6
from pxelab.events import Event
from pxelab.hosts.fleet import Fleet
from pxelab.hosts.install import UNRECORDED, HostState, InstallState, StateError
from pxelab.hosts.inventory import Host, normalize_mac
from pxelab.http.auth import SIGNED_CALLBACK
from pxelab.http.guard import GUARD, WHO, audit, refuse
from pxelab.http.keys import (
    HANDOUT,
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
from pxelab.state import StoreError


def _mac(request: web.Request) -> str:
    raw = request.match_info["mac"]
    try:
        return normalize_mac(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None


def _host(request: web.Request, mac: str) -> Host:
    host = request.app[INVENTORY].lookup(mac)
    if host is None:
        request[NOTE] = "unknown host"
        raise web.HTTPNotFound(text=f"no host with mac {mac}\n")
    return host


def _state(request: web.Request, mac: str) -> HostState:
    try:
        return request.app[INSTALL_STORE].get(mac)
    except StateError as exc:
        request[NOTE] = str(exc)
        raise web.HTTPInternalServerError(text=f"{exc}\n") from None


def _summary(request: web.Request, host: Host) -> dict[str, Any]:
    """host_summary; a broken state file shows as an error on that host alone."""
    last = request.app[TIMELINE].last(host.mac)
    try:
        return host_summary(host, request.app[INSTALL_STORE].get(host.mac), last)
    except StateError as exc:
        return {**host_summary(host, UNRECORDED, last), "state": None, "state_error": str(exc)}


def _event(event: Event | None) -> dict[str, Any] | None:
    return None if event is None else event.to_json()


def host_summary(host: Host, state: HostState, last: Event | None) -> dict[str, Any]:
    """One host as /api/hosts lists it: identity, install state, and its last boot stage."""
    return {
        "name": host.name,
        "mac": host.mac,
        "arch": host.arch,
        "ip": str(host.ip) if host.ip else None,
        "distro": host.distro,
        "template": host.template,
        "pxeboot": host.pxeboot,
        "state": state.state.value,
        "state_changed": state.changed,
        "stage": last.stage if last else None,
        "last_event": _event(last),
    }


async def list_hosts(request: web.Request) -> web.Response:
    """GET /api/hosts: every host with its state and current stage; MACs seen but unknown."""
    inventory, timeline = request.app[INVENTORY], request.app[TIMELINE]
    hosts = inventory.hosts()
    known = {h.mac for h in hosts}
    body = {
        "hosts": [_summary(request, h) for h in hosts],
        "unknown": [
            {"mac": mac, "stage": e.stage if e else None, "last_event": _event(e)}
            for mac in timeline.macs()
            if mac not in known
            for e in [timeline.last(mac)]
        ],
        "broken_files": inventory.errors,
    }
    return web.json_response(body)


async def show_host(request: web.Request) -> web.Response:
    """GET /api/hosts/<mac>: the host, its state and its last event."""
    mac = _mac(request)
    host = _host(request, mac)
    summary = host_summary(host, _state(request, mac), request.app[TIMELINE].last(mac))
    summary["kernel"], summary["initrd"] = host.kernel, host.initrd
    summary["kernel_args"], summary["ssh_keys"] = host.kernel_args, list(host.ssh_keys)
    summary["source"] = host.source
    return web.json_response(summary)


async def host_events(request: web.Request) -> web.Response:
    """GET /api/hosts/<mac>/events?stage=: its boot timeline, oldest first (404 if never seen);
    `stage` keeps one stage's events (`log`: the installer's syslog lines)."""
    mac = _mac(request)
    events = request.app[TIMELINE].events(mac)
    store = request.app.get(STATE_STORE)
    if store is not None:  # what other instances recorded, and what came before a restart
        try:
            events = merge_events(await store.events(mac), events)
        except StoreError as exc:
            request[NOTE] = f"events from this instance only: {exc}"
    if not events and request.app[INVENTORY].lookup(mac) is None:
        raise web.HTTPNotFound(text=f"no host with mac {mac} and no events from it\n")
    stage = request.query.get("stage")
    if stage:
        events = [e for e in events if e.stage == stage]
    return web.json_response({"mac": mac, "events": [e.to_json() for e in events]})


def merge_events(stored: list[Event], local: list[Event]) -> list[Event]:
    """One timeline from the store's events and this instance's (some not written yet)."""
    return sorted(set(stored) | set(local), key=lambda e: e.time)


async def leases(request: web.Request) -> web.Response:
    """GET /api/leases: every active DHCP and DHCPv6 lease, from any instance sharing the store."""
    store = request.app.get(STATE_STORE)
    if store is None:
        raise web.HTTPNotFound(text="this server keeps no leases (no state store)\n")
    try:
        now = time.time()
        held, held6 = await store.active_leases(now), await store.active_leases6(now)
    except StoreError as exc:
        request[NOTE] = str(exc)
        raise web.HTTPServiceUnavailable(text=f"{exc}\n") from None
    return web.json_response(leases_json(held, held6))


def leases_json(
    held: Sequence[tuple[Lease, str]], held6: Sequence[tuple[Lease6, str]]
) -> dict[str, object]:
    """Both lease lists as /api/leases and `pxelab leases --json` show them."""
    return {
        "leases": [lease_json(lease, by) for lease, by in held],
        "leases6": [lease6_json(lease, by) for lease, by in held6],
    }


def lease_json(lease: Lease, instance: str) -> dict[str, object]:
    """One lease as /api/leases and `pxelab leases --json` show it."""
    return {
        "mac": lease.mac,
        "ip": str(lease.ip),
        "state": lease.state.value,
        "expires": lease.expires,
        "instance": instance,
    }


def lease6_json(lease: Lease6, instance: str) -> dict[str, object]:
    """One DHCPv6 lease as /api/leases shows it: `client` is the MAC, or "duid:<hex>" when the
    client's MAC is not known (`mac` is then null)."""
    return {
        "ip": str(lease.ip),
        "client": lease.client,
        "mac": None if lease.client.startswith("duid:") else lease.client,
        "iaid": lease.iaid,
        "state": lease.state.value,
        "expires": lease.expires,
        "instance": instance,
    }


def _shown_path(request: web.Request) -> str:
    """The request's path for the timeline, a signed callback's signature left out."""
    if "sig" in request.match_info:
        return request.path.rsplit("/", 1)[0] + "/<signed>"
    return request.path


async def _set_state(request: web.Request, state: InstallState, stage: str) -> web.Response:
    mac = _mac(request)
    host = _host(request, mac)
    try:
        record = await request.app[INSTALL_STORE].set(mac, state, time.time(), remote(request))
    except StoreError as exc:  # the database is away: nothing changed, the caller may retry
        request[NOTE] = str(exc)
        raise web.HTTPServiceUnavailable(text=f"{exc}\n") from None
    request[NOTE] = f"host {host.name} -> {state.value}"
    await audit(request, True, f"generation {record.generation}")
    request.app[TIMELINE].record(
        Event(
            time.time(),
            stage,
            mac=mac,
            ip=remote(request),
            state=state.value,
            method=request.method,
            path=_shown_path(request),
        )
    )
    return web.json_response({"name": host.name, "mac": mac, **record.to_json()})


async def installed(request: web.Request) -> web.Response:
    """POST /api/hosts/<mac>/installed: the install is done; next boots go to the local disk."""
    return await _set_state(request, InstallState.INSTALLED, "installed")


async def installed_signed(request: web.Request) -> web.Response:
    """POST /api/hosts/<mac>/installed/<generation>.<signature>: the installed system's own
    callback, signed for its MAC and install generation; no token. Anything else: 403, audited."""
    mac = _mac(request)
    host = _host(request, mac)
    reason = request.app[GUARD].verify(
        mac, _state(request, mac).generation, request.match_info["sig"]
    )
    if reason is not None:
        raise await refuse(request, 403, f"install callback of {host.name}: {reason}")
    request[WHO] = SIGNED_CALLBACK
    return await installed(request)


async def reinstall(request: web.Request) -> web.Response:
    """POST /api/hosts/<mac>/reinstall: the next boot installs again."""
    return await _set_state(request, InstallState.INSTALL, "reinstall")


async def explain_host(request: web.Request) -> web.Response:
    """GET /api/explain/<mac>?arch=: what DHCP, TFTP and HTTP would serve it."""
    mac = _mac(request)
    host = _host(request, mac)
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    local = ip_address(sockname[0].partition("%")[0]) if sockname else IPv4Address("127.0.0.1")
    server_ip = local if isinstance(local, IPv4Address) else IPv4Address("127.0.0.1")
    # Asked over IPv6: also say what DHCPv6 hands out, with this address in the URLs.
    server_ip6 = local if isinstance(local, IPv6Address) and not local.is_link_local else None
    port = int(sockname[1]) if sockname else 80
    inventory = request.app[INVENTORY]
    state = _state(request, mac)
    try:  # in a worker thread: explain looks at the TFTP root and may load templates
        result = await asyncio.to_thread(
            explain,
            host,
            state,
            request.app[RENDERER],
            base_url(request),
            server_ip,
            port,
            arch=request.query.get("arch") or None,
            handout=_handout(request),
            tftp_root=request.app.get(TFTP_ROOT),
            server_ip6=server_ip6,
            origins=inventory.origins(host) if isinstance(inventory, Fleet) else None,
        )
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    return web.json_response(result)


def _handout(request: web.Request) -> DhcpHandout:
    """What DHCP hands out now: the boot files follow the TFTP root when the app watches it."""
    handout, loaders = request.app[HANDOUT], request.app.get(LOADERS)
    return handout if loaders is None else replace(handout, boot_files=loaders.boot_files)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/hosts", list_hosts)
    app.router.add_get("/api/hosts/{mac}", show_host)
    app.router.add_get("/api/hosts/{mac}/events", host_events)
    app.router.add_post("/api/hosts/{mac}/installed", installed)
    app.router.add_post("/api/hosts/{mac}/installed/{sig}", installed_signed)
    app.router.add_post("/api/hosts/{mac}/reinstall", reinstall)
    app.router.add_get("/api/explain/{mac}", explain_host)
    app.router.add_get("/api/leases", leases)

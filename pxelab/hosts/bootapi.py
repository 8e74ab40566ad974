"""The external boot API: `GET <boot_api>/<mac>` answers a host object (or 404), cached for
`boot_api_ttl` seconds and fetched in the background, so no lookup (and no DHCP reply) waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from pxelab.errors import HostFileError
from pxelab.hosts.inventory import Host

log = logging.getLogger("pxelab.bootapi")

MODES = ("fallback", "always")
"""fallback: asked for MACs no host file or profile covers; always: asked first for every MAC."""
TIMEOUT = 2.0
"""Seconds one request may take before the MAC is treated as unknown (and retried later)."""
RETRY_AFTER_ERROR = 5.0
"""Seconds before a MAC whose request failed is asked for again."""
MAX_IN_FLIGHT = 16
"""Requests to the boot API at once at most."""
MAX_WANTED = 4096
"""MACs waiting to be asked about at most; more are asked about at their next request."""
MAX_CACHED = 16384
"""Answers kept at most; the oldest are dropped first."""
MAX_BODY = 64 * 1024
"""Largest answer read, in bytes."""

Validate = Callable[[Any, str], tuple[Host, dict[str, str]]]
"""Turns a decoded answer into a host (as host files are), or raises HostFileError."""


@dataclass(frozen=True)
class Answer:
    """What the boot API said about one MAC, and until when it holds."""

    host: Host | None
    """The host, or None for 404 or a failed request."""
    origins: dict[str, str]
    """Where each of the host's values came from."""
    expires: float
    """Monotonic time after which the MAC is asked for again."""


class BootApi:
    """The cache of boot API answers and the background task that fills it."""

    def __init__(
        self,
        url: str,
        validate: Validate,
        *,
        mode: str = "fallback",
        ttl: float = 60.0,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url.rstrip("/")
        self.validate = validate
        self.always = mode == "always"
        self.ttl, self.timeout, self.clock = ttl, timeout, clock
        self._cache: dict[str, Answer] = {}
        self._wanted: dict[str, None] = {}
        self._in_flight: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._logged: dict[str, float] = {}
        self.failures = 0
        """Requests that timed out, failed or were answered with something invalid."""

    # -- the loop's side: memory only ---------------------------------------------------------

    def cached(self, mac: str) -> Host | None:
        """The cached host for mac (stale answers too, until a new one comes); asks for a
        fresh answer in the background when there is none or it has expired."""
        answer = self._cache.get(mac)
        stale = answer is None or answer.expires <= self.clock()
        if stale and mac not in self._in_flight and len(self._wanted) < MAX_WANTED:
            self._wanted[mac] = None
            if self._wake is not None:
                self._wake.set()
        return answer.host if answer is not None else None

    def hosts(self) -> list[Host]:
        """Every host the cache holds."""
        return [a.host for a in list(self._cache.values()) if a.host is not None]

    def by_name(self, name: str) -> Host | None:
        return next((h for h in self.hosts() if h.name == name), None)

    def origins(self, mac: str) -> dict[str, str]:
        answer = self._cache.get(mac)
        return dict(answer.origins) if answer is not None else {}

    # -- the background task ------------------------------------------------------------------

    def start(self) -> None:
        """Start fetching (on the running loop)."""
        self._wake = asyncio.Event()
        if self._wanted:
            self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="boot-api")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        if self._wake is None:
            return
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    while self._wanted:
                        mac = next(iter(self._wanted))
                        del self._wanted[mac]
                        self._in_flight.add(mac)
                        await slots.acquire()
                        task = asyncio.create_task(self._fetch(session, mac, slots))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
            finally:
                for task in tasks:
                    task.cancel()

    async def _fetch(
        self, session: aiohttp.ClientSession, mac: str, slots: asyncio.Semaphore
    ) -> None:
        try:
            answer = await self.fetch(session, mac)
            self._cache.pop(mac, None)
            self._cache[mac] = answer  # newest last: the oldest answers go first
            while len(self._cache) > MAX_CACHED:
                del self._cache[next(iter(self._cache))]
        finally:
            self._in_flight.discard(mac)
            slots.release()

    async def fetch(self, session: aiohttp.ClientSession, mac: str) -> Answer:
        """Ask the boot API about one MAC; every failure is logged (once per interval) and
        answers None for RETRY_AFTER_ERROR seconds."""
        url = f"{self.url}/{mac}"
        try:
            async with session.get(url, headers={"Accept": "application/json"}) as response:
                if response.status == 404:
                    return Answer(None, {}, self.clock() + self.ttl)
                if response.status != 200:
                    return self._failed("status", f"{url}: HTTP {response.status}")
                body = await response.content.read(MAX_BODY + 1)
        except TimeoutError:
            return self._failed("timeout", f"{url}: no answer within {self.timeout:g}s")
        except aiohttp.ClientError as exc:
            return self._failed("unreachable", f"{url}: {type(exc).__name__}: {exc}")
        if len(body) > MAX_BODY:
            return self._failed("invalid", f"{url}: answer larger than {MAX_BODY} bytes")
        try:
            host, origins = self.validate(parse_answer(body, mac, url), f"boot API {url}")
        except HostFileError as exc:
            return self._failed("invalid", str(exc))
        return Answer(host, origins, self.clock() + self.ttl)

    def _failed(self, kind: str, message: str) -> Answer:
        self.failures += 1
        now = self.clock()
        interval = max(self.ttl, RETRY_AFTER_ERROR)
        if now - self._logged.get(kind, float("-inf")) >= interval:
            self._logged[kind] = now
            log.warning(
                "boot API: %s; the MAC is treated as unknown (logged once per %gs)",
                message,
                interval,
            )
        return Answer(None, {}, now + RETRY_AFTER_ERROR)


def parse_answer(body: bytes, mac: str, url: str) -> dict[str, Any]:
    """The decoded host object, with its `mac` checked against (or set to) the MAC asked for,
    and a name made up when it has none; HostFileError says what is wrong."""
    import json

    from pxelab.hosts.inventory import normalize_mac

    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HostFileError(f"boot API {url}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HostFileError(f"boot API {url}: expected a JSON object, got {type(data).__name__}")
    raw = data.get("mac", mac)
    try:
        same = isinstance(raw, str) and normalize_mac(raw) == mac
    except ValueError:
        same = False
    if not same:
        raise HostFileError(f"boot API {url}: key 'mac': {raw!r} is not the MAC asked for")
    data = {**data, "mac": mac}
    data.setdefault("name", f"api-{mac.replace(':', '')}")
    return data

"""The boot timeline: what each machine asked for, per MAC, bounded in memory.

Every service records into one `Timeline`: DHCP, TFTP and HTTP call `record` (TFTP knows only
the client's IP; the timeline maps it to the MAC that DHCP or HTTP last saw at that IP).
Events carry typed fields; their one-line text (`detail`) is rendered from them, never parsed.
Pure apart from the listeners it calls; the caller passes `now`.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from typing import assert_never

MAX_EVENTS_PER_HOST = 200
"""Events kept per MAC; older ones are dropped."""
MAX_LOG_LINES_PER_HOST = 200
"""`log` events (installer syslog lines) kept per MAC, apart from the boot events, so a chatty
installer never pushes its host's boot steps out."""
MAX_HOSTS = 4096
"""MACs tracked at most; the least recently seen is forgotten first."""

JsonValue = str | int | float
"""What one field of an event's JSON form holds."""


class TftpOutcome(StrEnum):
    """How a TFTP request ended."""

    COMPLETED = "completed"
    """The client acknowledged the whole file."""
    SIZE_PROBE = "size-probe"
    """The client answered the OACK with an ERROR: normal, it only wanted tsize."""
    CLIENT_ERROR = "client-error"
    """The client sent an ERROR during the transfer."""
    TIMED_OUT = "timed-out"
    """The client stopped answering; retransmissions ran out."""
    IDLE = "idle"
    """Reaped: no progress for the idle limit (a client that only repeats old ACKs)."""
    STOPPED = "stopped"
    """The server stopped the transfer without telling the client (closing, client gone)."""
    ERROR = "error"
    """The server answered with an ERROR: file not found, bad request, illegal operation."""
    REFUSED = "refused"
    """The path was refused: outside the root, hidden, or through a symlink."""
    UPLOAD_REFUSED = "upload-refused"
    """A write request: the server is read-only."""

    @property
    def result(self) -> str:
        """The result `/metrics` counts it under: completed, size-probe, failed or refused."""
        return _RESULTS.get(self, "refused")


_RESULTS = {
    TftpOutcome.COMPLETED: "completed",
    TftpOutcome.SIZE_PROBE: "size-probe",
    TftpOutcome.CLIENT_ERROR: "failed",
    TftpOutcome.TIMED_OUT: "failed",
    TftpOutcome.STOPPED: "failed",
}
"""Outcomes that are not "refused". As before events had fields, an idle transfer the server reaped
and an ERROR 4 for a stray packet mid-transfer count as refused, not failed."""


@dataclass(frozen=True)
class Event:
    """One thing that happened in a machine's boot; unset fields do not apply to it."""

    time: float
    """Wall-clock time (seconds since the epoch)."""
    stage: str
    """Short stage name: dhcp, tftp, script, kernel, initrd, install-data, installed, error, …"""
    _: KW_ONLY
    mac: str = ""
    """The machine's MAC (normalised), or '' when it is not known."""
    ip: str = ""
    """The client's IPv4 address, when known."""
    message_type: str = ""
    """DHCP: the reply's message type (OFFER, ACK, NAK)."""
    address: str = ""
    """DHCP: the address the reply gives the client (yiaddr)."""
    file: str = ""
    """The file: DHCP's boot file name, TFTP's requested file, the install-data file's name."""
    path: str = ""
    """HTTP: the URL path requested."""
    method: str = ""
    """HTTP: the request method, for API actions."""
    template: str = ""
    """HTTP: the boot template a script was rendered from."""
    state: str = ""
    """The install state set (installed, reinstall) or that chose the script (local boot)."""
    outcome: TftpOutcome | None = None
    """TFTP: how the request ended."""
    bytes_acked: int | None = None
    """TFTP: file bytes the client acknowledged."""
    size: int | None = None
    """TFTP: the file's size in bytes."""
    tsize: int | None = None
    """TFTP: the tsize the OACK announced (the client asked for it)."""
    blksize: int | None = None
    """TFTP: the negotiated block size."""
    windowsize: int | None = None
    """TFTP: the negotiated window size."""
    error_code: int | None = None
    """TFTP: the code of the ERROR the client sent or was sent."""
    error: str = ""
    """What went wrong: a TFTP error's text, or the message of an `error` event."""
    service: str = ""
    """`error` events: the service that failed (`dhcp`, `dhcp6`); /metrics counts it so."""
    reason: str = ""
    """Why, in more words: why a path was refused, why a transfer was stopped."""
    severity: int | None = None
    """Syslog (`log` events): the message's severity, 0 emerg to 7 debug."""
    facility: int | None = None
    """Syslog: the message's facility (1 user, 3 daemon, 16-23 local0-7, …)."""
    app: str = ""
    """Syslog: the program that logged the line (RFC 3164 tag, RFC 5424 APP-NAME)."""
    text: str = ""
    """Syslog: the message itself."""

    @property
    def detail(self) -> str:
        """The one-line text the status page and the API show ("ACK 10.0.0.5 ipxe.efi")."""
        return _render(self)

    def to_json(self) -> dict[str, JsonValue]:
        """`{time, mac, stage, detail, ip}` and every field that is set; `from_json` reads it."""
        data: dict[str, JsonValue] = {
            "time": self.time,
            "mac": self.mac,
            "stage": self.stage,
            "detail": self.detail,
            "ip": self.ip,
        }
        for f in _OPTIONAL:
            value = getattr(self, f.name)
            if value != f.default:
                data[f.name] = value.value if isinstance(value, TftpOutcome) else value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Event:
        """The event `to_json` wrote; ValueError names the key that is missing or wrong."""
        unknown = sorted(set(data) - JSON_KEYS)
        if unknown:
            raise ValueError(f"event: unknown key {unknown[0]!r}")
        for key in ("time", "stage"):
            if key not in data:
                raise ValueError(f"event: missing key {key!r}")
        time = data["time"]
        if isinstance(time, bool) or not isinstance(time, int | float):
            raise ValueError(f"event key 'time': expected a number, got {time!r}")

        def text(key: str) -> str:
            return _str(data, key) if key in data else ""

        def number(key: str) -> int | None:
            return _int(data, key) if key in data else None

        return cls(
            float(time),
            _str(data, "stage"),
            mac=text("mac"),
            ip=text("ip"),
            message_type=text("message_type"),
            address=text("address"),
            file=text("file"),
            path=text("path"),
            method=text("method"),
            template=text("template"),
            state=text("state"),
            outcome=_outcome(data.get("outcome")),
            bytes_acked=number("bytes_acked"),
            size=number("size"),
            tsize=number("tsize"),
            blksize=number("blksize"),
            windowsize=number("windowsize"),
            error_code=number("error_code"),
            error=text("error"),
            service=text("service"),
            reason=text("reason"),
            severity=number("severity"),
            facility=number("facility"),
            app=text("app"),
            text=text("text"),
        )


_OPTIONAL = tuple(f for f in dataclasses.fields(Event) if f.name not in ("time", "stage"))
"""The keyword fields, in order: unset (at their default) they are left out of the JSON."""
_OUTCOMES = tuple(o.value for o in TftpOutcome)
"""The outcomes' names, as the JSON form spells them."""
JSON_KEYS: frozenset[str] = frozenset({"time", "stage", "detail"} | {f.name for f in _OPTIONAL})
"""Keys an event's JSON form may have; `detail` is rendered, and ignored when read."""


def _str(data: Mapping[str, object], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise ValueError(f"event key {key!r}: expected a string, got {value!r}")
    return value


def _int(data: Mapping[str, object], key: str) -> int | None:
    value = data[key]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"event key {key!r}: expected an integer, got {value!r}")
    return value


def _outcome(value: object) -> TftpOutcome | None:
    if value is None:
        return None
    if isinstance(value, str) and value in _OUTCOMES:
        return TftpOutcome(value)
    raise ValueError(f"event key 'outcome': {value!r} is not one of {', '.join(_OUTCOMES)}")


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


def tftp_summary(event: Event) -> str:
    """What became of a TFTP request, in words ("sent 1024 bytes"); its detail adds the file."""
    code, error, acked, size = _n(event.error_code), event.error, event.bytes_acked, event.size
    reason = f": {event.reason}" if event.reason else ""
    outcome = event.outcome
    match outcome:
        case TftpOutcome.COMPLETED:
            return f"sent {_n(acked)} bytes"
        case TftpOutcome.SIZE_PROBE:
            tsize = f" (tsize {event.tsize})" if event.tsize is not None else ""
            return f"aborted after OACK{tsize}, client error {code} ({error})"
        case TftpOutcome.CLIENT_ERROR:
            return f"client error {code} ({error}) after {_n(acked)} bytes"
        case TftpOutcome.TIMED_OUT:
            return f"timed out, {_n(acked)} of {_n(size)} bytes acknowledged"
        case TftpOutcome.IDLE:
            return f"reaped, idle with {_n(acked)} of {_n(size)} bytes acknowledged"
        case TftpOutcome.STOPPED:
            return f"stopped, {event.reason} ({_n(acked)} of {_n(size)} bytes)"
        case TftpOutcome.ERROR:
            return f"error {code} ({error}){reason}"
        case TftpOutcome.REFUSED:
            return f"refused, error {code} ({error}){reason}"
        case TftpOutcome.UPLOAD_REFUSED:
            return f"upload refused ({error})"
        case None:
            return error
    assert_never(outcome)


SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
"""Syslog severity names by number (RFC 5424 §6.2.1)."""


def _render(e: Event) -> str:
    if e.stage == "log":
        level = SEVERITIES[e.severity] if e.severity is not None and 0 <= e.severity < 8 else "?"
        return f"[{level}] {e.app}: {e.text}" if e.app else f"[{level}] {e.text}"
    if e.outcome is not None:
        return f"{e.file}: {tftp_summary(e)}"
    if e.message_type:
        return " ".join(p for p in (e.message_type, e.address, e.file) if p)
    suffix = ""
    if e.stage == "ipxe":
        text = f"chain script {e.path}"
    elif e.stage == "script":
        text, suffix = f"boot script {e.path}", e.template
    elif e.stage == "local-boot":
        text, suffix = f"local-boot script {e.path}", e.state
    elif e.state:
        text, suffix = f"state {e.state}", f"{e.method} {e.path}".strip()
    else:
        text = " ".join(p for p in (e.file, e.path, e.error) if p)
    return f"{text} ({suffix})" if suffix else text


Listener = Callable[[Event], None]


class Timeline:
    """Events per MAC, the IP->MAC map, and listeners (for live views)."""

    def __init__(
        self,
        per_host: int = MAX_EVENTS_PER_HOST,
        max_hosts: int = MAX_HOSTS,
        log_per_host: int = MAX_LOG_LINES_PER_HOST,
    ) -> None:
        self.per_host, self.max_hosts, self.log_per_host = per_host, max_hosts, log_per_host
        self._events: OrderedDict[str, deque[Event]] = OrderedDict()
        self._logs: dict[str, deque[Event]] = {}
        self._mac_at: dict[str, str] = {}
        self._listeners: list[Listener] = []

    def bind(self, ip: str, mac: str) -> None:
        """Remember that mac is at ip (DHCP ACK, or an HTTP request that names its MAC)."""
        if ip and mac:
            self._mac_at[ip] = mac

    def mac_at(self, ip: str) -> str:
        return self._mac_at.get(ip, "")

    def record(self, event: Event) -> Event:
        """Add an event; its mac may be left empty when its ip is known to the timeline.

        Returns the event as stored (with the mac filled in)."""
        if event.mac and event.ip:
            self.bind(event.ip, event.mac)
        elif not event.mac and (mac := self.mac_at(event.ip)):
            event = dataclasses.replace(event, mac=mac)
        self._append(event)
        for listener in list(self._listeners):
            listener(event)
        return event

    def _append(self, event: Event) -> None:
        key = event.mac or f"ip:{event.ip}"
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque(maxlen=self.per_host)
            while len(self._events) > self.max_hosts:
                gone, _ = self._events.popitem(last=False)
                self._logs.pop(gone, None)
        else:
            self._events.move_to_end(key)
        if event.stage == "log":
            logs = self._logs.get(key)
            if logs is None:
                logs = self._logs[key] = deque(maxlen=self.log_per_host)
            logs.append(event)
        else:
            events.append(event)

    def restore(self, events: Iterable[Event]) -> None:
        """Take in events from before a restart (oldest first), without telling the listeners."""
        for event in events:
            if event.mac and event.ip:
                self.bind(event.ip, event.mac)
            self._append(event)

    def events(self, mac: str) -> list[Event]:
        """This MAC's events (boot events and log lines), oldest first."""
        logs = self._logs.get(mac)
        if not logs:
            return list(self._events.get(mac, ()))
        return list(heapq.merge(self._events.get(mac, ()), logs, key=lambda e: e.time))

    def last(self, mac: str) -> Event | None:
        """The newest boot event of this MAC (its stage), else its newest log line."""
        events, logs = self._events.get(mac), self._logs.get(mac)
        if events:
            return events[-1]
        return logs[-1] if logs else None

    def macs(self) -> list[str]:
        """MACs with events, least recently active first (IP-only clients are left out)."""
        return [k for k in self._events if not k.startswith("ip:")]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call listener for every new event; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

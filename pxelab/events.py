"""The boot timeline: what each machine asked for, per MAC, bounded in memory.

Every service records into one `Timeline`: DHCP, TFTP and HTTP call `record` (TFTP knows only
the client's IP; the timeline maps it to the MAC that DHCP or HTTP last saw at that IP).
Pure apart from the listeners it calls; the caller passes `now`.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_EVENTS_PER_HOST = 200
"""Events kept per MAC; older ones are dropped."""
MAX_HOSTS = 4096
"""MACs tracked at most; the least recently seen is forgotten first."""


@dataclass(frozen=True)
class Event:
    """One thing that happened in a machine's boot."""

    time: float
    """Wall-clock time (seconds since the epoch)."""
    mac: str
    """The machine's MAC (normalised), or '' when it is not known."""
    stage: str
    """Short stage name: dhcp, tftp, script, kernel, initrd, install-data, installed, error, …"""
    detail: str
    """What exactly: the message type and address, the file name, the URL path, the error."""
    ip: str = ""
    """The client's IPv4 address, when known."""


Listener = Callable[[Event], None]


class Timeline:
    """Events per MAC, the IP->MAC map, and listeners (for live views)."""

    def __init__(self, per_host: int = MAX_EVENTS_PER_HOST, max_hosts: int = MAX_HOSTS) -> None:
        self.per_host, self.max_hosts = per_host, max_hosts
        self._events: OrderedDict[str, deque[Event]] = OrderedDict()
        self._mac_at: dict[str, str] = {}
        self._listeners: list[Listener] = []

    def bind(self, ip: str, mac: str) -> None:
        """Remember that mac is at ip (DHCP ACK, or an HTTP request that names its MAC)."""
        if ip and mac:
            self._mac_at[ip] = mac

    def mac_at(self, ip: str) -> str:
        return self._mac_at.get(ip, "")

    def record(self, now: float, stage: str, detail: str, *, mac: str = "", ip: str = "") -> Event:
        """Add an event; mac may be left out when ip is known to the timeline."""
        if mac and ip:
            self.bind(ip, mac)
        mac = mac or self.mac_at(ip)
        event = Event(now, mac, stage, detail, ip)
        key = mac or f"ip:{ip}"
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque(maxlen=self.per_host)
            while len(self._events) > self.max_hosts:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        events.append(event)
        for listener in list(self._listeners):
            listener(event)
        return event

    def events(self, mac: str) -> list[Event]:
        """This MAC's events, oldest first."""
        return list(self._events.get(mac, ()))

    def last(self, mac: str) -> Event | None:
        events = self._events.get(mac)
        return events[-1] if events else None

    def macs(self) -> list[str]:
        """MACs with events, least recently active first (IP-only clients are left out)."""
        return [k for k in self._events if not k.startswith("ip:")]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call listener for every new event; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

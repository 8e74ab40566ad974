"""Labs made of network namespaces: a server namespace with a bridge, and clients or taps on it.

Everything the tests send stays inside namespaces made here; they are deleted on exit,
even when the test fails. Needs root (CI runs as root).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_counter = itertools.count()

SUBNET_PREFIX = "10.213"


def require_root() -> None:
    """Fail (never skip) when the tests that build namespaces are run without root."""
    if os.geteuid() != 0:
        raise RuntimeError(
            "this test builds network namespaces and needs root; run it as root "
            "(CI does), or deselect it with -m 'not netns'"
        )


def sh(*cmd: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, and raise with that output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 10
) -> int:
    """Send sig if it still runs, wait up to timeout, then SIGKILL; its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class NetNs:
    """One network namespace; commands run inside it with `ip netns exec`."""

    name: str

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, *cmd: str, timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return sh(*self.argv(*cmd), timeout=timeout, check=check)

    def popen(self, *cmd: str, **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.argv(*cmd), **kwargs)


@dataclass
class Lab:
    """A server namespace whose bridge `br0` holds `server_ip`/24, plus client namespaces."""

    server: NetNs
    subnet: str
    server_ip: str
    bridge: str = "br0"
    ipv6_prefix: str | None = None
    """The bridge's IPv6 /64 (server at ::1), e.g. "fd00:77:12::"; None: no IPv6 lab."""
    clients: list[NetNs] = field(default_factory=list)
    _ports: itertools.count[int] = field(default_factory=itertools.count)

    def ip(self, host: int) -> str:
        """An address in the lab subnet, e.g. lab.ip(50) -> 10.213.N.50."""
        return f"{self.subnet}.{host}"

    def add_client(self, mac: str | None = None) -> NetNs:
        """A new namespace with interface `eth0` (no address) cabled to the bridge."""
        n = next(self._ports)
        ns = NetNs(f"{self.server.name}-c{n}")
        sh("ip", "netns", "add", ns.name)
        self.clients.append(ns)
        port = f"vc{n}"
        self.server.run(
            "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name
        )
        self.server.run("ip", "link", "set", port, "master", self.bridge, "up")
        if mac:
            ns.run("ip", "link", "set", "eth0", "address", mac)
        if self.ipv6_prefix is not None:  # no DAD wait before the link-local address is usable
            ns.run("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
        ns.run("ip", "link", "set", "lo", "up")
        ns.run("ip", "link", "set", "eth0", "up")
        return ns

    def add_tap(self) -> str:
        """A tap device in the server namespace, on the bridge, for a QEMU NIC."""
        name = f"tap{next(self._ports)}"
        self.server.run("ip", "tuntap", "add", "dev", name, "mode", "tap")
        self.server.run("ip", "link", "set", name, "master", self.bridge, "up")
        return name


@contextmanager
def lab(*, ipv4: bool = True, ipv6: bool = False) -> Iterator[Lab]:
    """Build a fresh lab and delete all of its namespaces on exit; `ipv4` False leaves the
    bridge without IPv4, `ipv6` gives it `<ipv6_prefix>1/64` (a unique local prefix)."""
    require_root()
    n = next(_counter)
    third = (os.getpid() + n) % 200 + 20
    name = f"pxl{os.getpid()}x{n}"
    server = NetNs(name)
    subnet = f"{SUBNET_PREFIX}.{third}"
    prefix = f"fd00:{os.getpid() % 65535 + 1:x}:{n + 1:x}::" if ipv6 else None
    the_lab = Lab(server=server, subnet=subnet, server_ip=f"{subnet}.1", ipv6_prefix=prefix)
    sh("ip", "netns", "add", name)
    try:
        server.run("ip", "link", "set", "lo", "up")
        server.run("ip", "link", "add", "br0", "type", "bridge")
        server.run("ip", "link", "set", "br0", "type", "bridge", "forward_delay", "0")
        if ipv4:
            server.run("ip", "addr", "add", f"{the_lab.server_ip}/24", "dev", "br0")
        if prefix is not None:
            server.run("ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
            server.run("sysctl", "-qw", "net.ipv6.conf.br0.accept_dad=0")
            server.run("ip", "-6", "addr", "add", f"{prefix}1/64", "dev", "br0", "nodad")
        server.run("ip", "link", "set", "br0", "up")
        yield the_lab
    finally:
        for ns in the_lab.clients:
            sh("ip", "netns", "del", ns.name, check=False)
        sh("ip", "netns", "del", name, check=False)

"""Every way `pxelab serve` can fail to start: exit 2 and one line naming the key, never a traceback.

The daemon runs as root without the capabilities that let root ignore file modes and bind low
ports (setpriv drops them from its bounding set), so it meets the walls an unprivileged user or a
systemd `DynamicUser` meets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pxelab.testing.netns import require_root

ROOT = Path(__file__).resolve().parents[2]
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-net_bind_service"]
"""Root, without what lets it read or write any file and bind ports below 1024."""

pytestmark = pytest.mark.root


@dataclass
class Start:
    """One `pxelab serve` to run: its extra flags, what to prepare, what the line must say."""

    flags: list[str]
    """Flags after the defaults (which give each directory its own place in the test's tmp)."""
    key: str
    """The key the one line must name."""
    says: str
    """And what it must say about it."""
    prepare: Callable[[Path], object] = lambda tmp: None
    """Makes the walls in tmp before the start."""
    wrap: list[str] = field(default_factory=list)
    """Runs before setpriv (e.g. a fresh network namespace)."""


def _mode(path: Path, mode: int, *, file: bool = False) -> None:
    if file:
        path.write_text("http_port = 8080\n")
    else:
        path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)


def _template(tmp: Path, name: str, text: str, mode: int = 0o644) -> None:
    (tmp / "templates").mkdir()
    (tmp / "templates" / name).write_text(text)
    (tmp / "templates" / name).chmod(mode)


@pytest.fixture
def busy_ports() -> Iterator[tuple[int, int]]:
    """A TCP and a UDP port on 127.0.0.1 that someone else holds."""
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    udp.bind(("127.0.0.1", 0))
    try:
        yield tcp.getsockname()[1], udp.getsockname()[1]
    finally:
        tcp.close()
        udp.close()


RANGE = ["--dhcp-range", "10.0.0.100-10.0.0.199"]

CASES: dict[str, Start] = {
    "dir-cannot-be-created": Start(
        ["--hosts-dir", "{tmp}/locked/hosts"],
        "hosts_dir",
        "cannot create {tmp}/locked/hosts: Permission denied",
        lambda tmp: _mode(tmp / "locked", 0o555),
    ),
    "dir-cannot-be-read": Start(
        ["--images-dir", "{tmp}/secret"],
        "images_dir",
        "cannot read {tmp}/secret: Permission denied",
        lambda tmp: _mode(tmp / "secret", 0o311),
    ),
    "dir-cannot-be-written": Start(
        ["--state-dir", "{tmp}/readonly"],
        "state_dir",
        "cannot write in {tmp}/readonly: Permission denied",
        lambda tmp: _mode(tmp / "readonly", 0o555),
    ),
    "file-where-a-dir-should-be": Start(
        ["--tftp-root", "{tmp}/a-file", "--tftp-port", "16971", "--tftp-address", "127.0.0.1"],
        "tftp_root",
        "{tmp}/a-file is not a directory",
        lambda tmp: (tmp / "a-file").write_text("x"),
    ),
    "home-not-writable-state-dir": Start(
        ["--state-dir", "{tmp}/home/.pxelab/state"],
        "state_dir",
        "cannot create {tmp}/home/.pxelab/state: Permission denied",
        lambda tmp: _mode(tmp / "home", 0o555),
    ),
    "http-port-in-use": Start(["--http-port", "{tcp}"], "http_port", "Address already in use"),
    "tftp-port-in-use": Start(
        ["--tftp-port", "{udp}", "--tftp-address", "127.0.0.1"],
        "tftp_port",
        "Address already in use",
    ),
    "http-port-not-allowed": Start(["--http-port", "80"], "http_port", "Permission denied"),
    "tftp-port-not-allowed": Start(
        ["--tftp-port", "69", "--tftp-address", "127.0.0.1"], "tftp_port", "Permission denied"
    ),
    "no-such-interface": Start(
        ["--interface", "nope0", *RANGE], "interface", "interface 'nope0' does not exist"
    ),
    "interface-without-ipv4": Start(
        ["--interface", "lo", *RANGE],
        "interface",
        "interface 'lo' has no IPv4 address",
        wrap=["unshare", "--net"],  # a fresh namespace: its lo is down, without 127.0.0.1
    ),
    "config-unreadable": Start(
        ["--config", "{tmp}/pxelab.toml"],
        "pxelab.toml",
        "{tmp}/pxelab.toml: cannot read: Permission denied",
        lambda tmp: _mode(tmp / "pxelab.toml", 0o000, file=True),
    ),
    "templates-dir-missing": Start(
        ["--templates-dir", "{tmp}/no-templates"],
        "templates_dir",
        "{tmp}/no-templates does not exist",
    ),
    "template-broken": Start(
        ["--templates-dir", "{tmp}/templates"],
        "templates_dir",
        "template {tmp}/templates/boot.ipxe.j2 line 2:",
        lambda tmp: _template(tmp, "boot.ipxe.j2", "#!ipxe\n{% if %}\n"),
    ),
    "template-unreadable": Start(
        ["--templates-dir", "{tmp}/templates"],
        "templates_dir",
        "template preseed.cfg.j2: cannot load",
        lambda tmp: _template(tmp, "preseed.cfg.j2", "", mode=0o000),
    ),
    "state-url-unreachable": Start(
        ["--state-url", "postgresql://pxelab@127.0.0.1:1/pxelab"],
        "state_url",
        "cannot reach the server",
    ),
    "tls-cert-missing": Start(
        ["--tls-cert", "{tmp}/none.pem", "--tls-key", "{tmp}/none.key"],
        "tls_cert",
        "cannot read",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_start_up_failure_is_one_line_naming_the_key(
    tmp_path: Path, busy_ports: tuple[int, int], case: str
) -> None:
    require_root()
    start = CASES[case]
    tmp_path.chmod(0o755)
    start.prepare(tmp_path)
    values = {"tmp": str(tmp_path), "tcp": str(busy_ports[0]), "udp": str(busy_ports[1])}
    defaults = ["--http-address", "127.0.0.1", "--http-port", "0", "--tftp-port", "0"]
    for key in ("hosts_dir", "images_dir", "tftp_root", "state_dir"):
        defaults += [f"--{key.replace('_', '-')}", f"{tmp_path}/{key}"]
    flags = [f.format(**values) for f in start.flags]
    argv = [*start.wrap, *UNPRIVILEGED, sys.executable, "-m", "pxelab", "serve", *defaults, *flags]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": f"{tmp_path}/home"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pxelab: error: ") and start.key in lines[0], lines[0]
    assert start.says.format(**values) in lines[0], lines[0]


def test_a_service_that_is_off_needs_no_directory(tmp_path: Path) -> None:
    """As a user whose home cannot be written (`nobody`, a DynamicUser): with TFTP off and the
    other directories given, nothing under the home is made and the daemon starts."""
    require_root()
    home = tmp_path / "home"
    _mode(home, 0o555)
    argv = [*UNPRIVILEGED, sys.executable, "-m", "pxelab", "serve", "--http-address", "127.0.0.1"]
    argv += ["--http-port", "0", "--tftp-port", "0", "--hosts-dir", f"{tmp_path}/hosts"]
    argv += ["--images-dir", f"{tmp_path}/images", "--state-dir", f"{tmp_path}/state"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home)}
    argv = ["timeout", "--preserve-status", "-s", "INT", "5", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "pxelab ready" in done.stderr and "tftp off" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(home.iterdir()) == []  # no ~/.pxelab/tftp: TFTP is off
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "hosts", "images", "state"]

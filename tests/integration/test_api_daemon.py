"""The install state through the real daemon process: the CLI, the API and a restart agree."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from pxelab.testing.bootlab import Daemon, LabDirs, create_token, start_daemon_usernet
from tests.integration.test_api import metric_samples

MAC = "52:54:00:00:2a:01"


def _pxelab(dirs: LabDirs, *argv: str) -> subprocess.CompletedProcess[str]:
    flags = ["--hosts-dir", str(dirs.hosts), "--state-dir", str(dirs.state)]
    return subprocess.run(
        [sys.executable, "-m", "pxelab", *argv, *flags], capture_output=True, text=True, timeout=30
    )


def _http(daemon: Daemon, path: str, method: str = "GET", token: str = "") -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{daemon.http_port}{path}"
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:  # loopback only
        return str(resp.read().decode())


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[LabDirs]:
    lab = LabDirs(tmp_path)
    for d in (lab.hosts, lab.images, lab.tftp, lab.state):
        d.mkdir()
    yield lab


def test_installed_survives_a_restart_and_cli_reinstall_reaches_the_daemon(dirs: LabDirs) -> None:
    added = _pxelab(dirs, "hosts", "add", "d1", "--mac", MAC, "--distro", "demo")
    assert added.returncode == 0, added.stderr
    token = create_token(dirs, "ops")
    daemon = start_daemon_usernet(dirs)
    try:
        assert "kernel " in _http(daemon, f"/boot?mac={MAC}")
        state = json.loads(_http(daemon, f"/api/hosts/{MAC}/installed", "POST", token))
        assert state["state"] == "installed"
    finally:
        assert daemon.stop() == 0
    daemon.log.rename(daemon.log.with_name("first-run.log"))  # the next ready line is its own
    daemon = start_daemon_usernet(dirs)  # a new process reads the state back
    try:
        assert _http(daemon, f"/boot?mac={MAC}").splitlines()[-1] == "exit"
        listed = _pxelab(dirs, "hosts", "list", "--json")
        assert json.loads(listed.stdout)[0]["state"] == "installed"
        assert _pxelab(dirs, "hosts", "reinstall", "d1").returncode == 0
        # No restart needed: the daemon sees the CLI's write within a second (the SQLite
        # store polls its data_version; PostgreSQL notifies), without reading per request.
        deadline, boots = time.monotonic() + 30, 2  # bounds a hang on a loaded machine
        while "kernel " not in (script := _http(daemon, f"/boot?mac={MAC}")):
            assert time.monotonic() < deadline, script
            time.sleep(0.1)
            boots += 1
        hosts = json.loads(_http(daemon, "/api/hosts"))["hosts"]
        assert [(h["name"], h["state"], h["stage"]) for h in hosts] == [("d1", "install", "script")]
        samples = metric_samples(_http(daemon, "/metrics"))
        assert (
            samples[("pxelab_http_requests_total", (("route", "/boot"), ("status", "200")))]
            == boots
        )
    finally:
        assert daemon.stop() == 0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_count_real_tftp_transfers_through_the_timeline(dirs: LabDirs) -> None:
    (dirs.tftp / "ipxe.efi").write_bytes(b"x" * 5000)
    port = _free_udp_port()
    daemon = start_daemon_usernet(dirs, "--tftp-port", str(port), "--tftp-address", "127.0.0.1")
    try:
        for name in ("ipxe.efi", "missing.efi"):
            subprocess.run(
                ["curl", "-s", "-o", "/dev/null", f"tftp://127.0.0.1:{port}/{name}"], timeout=20
            )
        # curl exits once it has sent its last ACK, maybe before the daemon has read it: wait
        # for the transfer to be counted (a positive signal), then compare every value
        completed = ("pxelab_tftp_transfers_total", (("result", "completed"),))
        deadline = time.monotonic() + 30
        while (samples := metric_samples(_http(daemon, "/metrics"))).get(completed) != 1.0:
            assert time.monotonic() < deadline, samples
            time.sleep(0.05)
        expected = {
            completed: 1.0,
            ("pxelab_tftp_transfers_total", (("result", "refused"),)): 1.0,
            ("pxelab_tftp_sent_bytes_total", ()): 5000.0,
            ("pxelab_boot_events_total", (("stage", "tftp"),)): 2.0,
        }
        assert {key: samples.get(key) for key in expected} == expected
    finally:
        assert daemon.stop() == 0


def _until(daemon: Daemon, path: str, wanted: str, seconds: float = 30.0) -> str:
    """GET path until its body contains wanted (the daemon follows files and the store)."""
    deadline = time.monotonic() + seconds
    while wanted not in (body := _http(daemon, path)):
        assert time.monotonic() < deadline, body
        time.sleep(0.1)
    return body


def test_cached_scripts_follow_templates_host_files_and_reinstalls(dirs: LabDirs) -> None:
    """The daemon caches each /boot?mac= script; every thing it is made from invalidates it."""
    templates = dirs.root / "templates"
    templates.mkdir()
    boot = templates / "boot.ipxe.j2"
    boot.write_text("#!ipxe\n{% include 'part.j2' %}\nkernel {{ kernel_url }}\n")
    (templates / "part.j2").write_text("echo one {{ host.name }}\n")
    assert _pxelab(dirs, "hosts", "add", "d1", "--mac", MAC, "--distro", "demo").returncode == 0
    token = create_token(dirs, "ops")
    daemon = start_daemon_usernet(dirs, "--templates-dir", str(templates))
    path = f"/boot?mac={MAC}"
    try:
        assert "echo one d1" in _http(daemon, path)
        assert "echo one d1" in _http(daemon, path)  # from the cache
        # an included template changes on disk
        (templates / "part.j2").write_text("echo two {{ host.name }}\n")
        _until(daemon, path, "echo two d1")
        # the host file changes (its image directory)
        host_file = next(dirs.hosts.glob("*.json"))
        data = json.loads(host_file.read_text())
        host_file.write_text(json.dumps({**data, "distro": "other"}))
        _until(daemon, path, "/images/other/")
        # installed (through the API), then `hosts reinstall` from another process
        _http(daemon, f"/api/hosts/{MAC}/installed", "POST", token)
        assert _http(daemon, path).splitlines()[-1] == "exit"
        assert _pxelab(dirs, "hosts", "reinstall", "d1").returncode == 0
        _until(daemon, path, "echo two d1")
    finally:
        assert daemon.stop() == 0


def test_no_access_log_line_is_lost_on_sigterm(dirs: LabDirs) -> None:
    """The daemon writes its log from a queue in a thread; SIGTERM drains it before exiting."""
    assert _pxelab(dirs, "hosts", "add", "d1", "--mac", MAC, "--distro", "demo").returncode == 0
    daemon = start_daemon_usernet(dirs)
    requests = 300
    try:
        for i in range(requests):
            _http(daemon, f"/boot?mac={MAC}&n={i}")
    finally:
        assert daemon.stop() == 0
    lines = daemon.text().splitlines()
    for i in range(requests):
        assert sum(f"GET /boot?mac={MAC}&n={i} 200 " in line for line in lines) == 1, i
    assert "pxelab stopping" in daemon.text()


def test_http_listens_with_room_for_a_rack_powering_on(dirs: LabDirs) -> None:
    """1,000 machines connecting at once must not wait for SYN retransmissions (backlog 1024)."""
    daemon = start_daemon_usernet(dirs)
    try:
        listening = subprocess.run(
            ["ss", "-Hltn", "sport", "=", f":{daemon.http_port}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert int(listening[2]) == min(1024, somaxconn), listening  # Send-Q: the backlog
    finally:
        assert daemon.stop() == 0


def test_the_api_and_the_cli_list_ipv4_and_ipv6_leases(dirs: LabDirs) -> None:
    """Leases the store holds (as a DHCP and a DHCPv6 server wrote them) are listed alike by
    GET /api/leases on the running daemon and by `pxelab leases` beside it."""
    from pxelab.dhcp.leases import Lease, LeaseState
    from pxelab.dhcp6.leases import Lease6
    from pxelab.state.sqlite import FILE_NAME, SqliteStore

    later = time.time() + 3600

    async def write() -> None:
        store = SqliteStore(dirs.state / FILE_NAME, instance="lab-1")
        await store.open()
        try:
            lease = Lease(IPv4Address("10.0.0.5"), MAC, LeaseState.BOUND, later, since=1.0)
            assert await store.commit_leases([lease], 1.0) == []
            lease6 = Lease6(IPv6Address("2001:db8::1000"), MAC, 9, LeaseState.BOUND, later, 1.0)
            assert await store.commit_leases6([lease6], 1.0) == []
        finally:
            await store.close()

    asyncio.run(write())
    daemon = start_daemon_usernet(dirs)
    try:
        listed = json.loads(_http(daemon, "/api/leases"))
        cli, table = (
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pxelab",
                    "leases",
                    *json_flag,
                    "--state-dir",
                    str(dirs.state),
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            for json_flag in (["--json"], [])
        )
    finally:
        assert daemon.stop() == 0
    assert [(x["ip"], x["mac"], x["instance"]) for x in listed["leases"]] == [
        ("10.0.0.5", MAC, "lab-1")
    ]
    assert [(x["ip"], x["client"], x["iaid"], x["instance"]) for x in listed["leases6"]] == [
        ("2001:db8::1000", MAC, 9, "lab-1")
    ]
    assert cli.returncode == 0 and json.loads(cli.stdout) == listed, cli.stderr
    assert "IPV6" in table.stdout and f"2001:db8::1000  {MAC}  9" in table.stdout, table.stdout

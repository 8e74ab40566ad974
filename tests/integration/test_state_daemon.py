"""The daemon on PostgreSQL when the database goes away while it serves: boot scripts keep coming
(install states are in memory), a write fails cleanly with 503, nothing crashes, and once the
database is back pxelab reconnects and the same write succeeds; the boot history of before a
restart is still there."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from pxelab.testing.bootlab import Daemon, LabDirs, create_token, start_daemon_usernet, write_host
from pxelab.testing.postgres import PostgresCluster

MAC = "52:54:00:00:3c:01"


def _http(daemon: Daemon, path: str, method: str = "GET", token: str = "") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{daemon.http_port}{path}"
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:  # loopback only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _lab(tmp_path: Path) -> LabDirs:
    dirs = LabDirs(tmp_path)
    for d in (dirs.hosts, dirs.images, dirs.tftp, dirs.state):
        d.mkdir()
    write_host(dirs, {"name": "pg1", "mac": MAC, "distro": "demo"})
    return dirs


def test_the_database_going_away_is_survived(tmp_path: Path, pg_cluster: PostgresCluster) -> None:
    url = pg_cluster.create_database()
    dirs = _lab(tmp_path)
    token = create_token(dirs, "ops", "--state-url", url)
    daemon = start_daemon_usernet(dirs, "--state-url", url)
    try:
        assert _http(daemon, f"/boot?mac={MAC}")[0] == 200
        pg_cluster.stop()
        try:
            status, script = _http(daemon, f"/boot?mac={MAC}")  # from memory: still served
            assert status == 200 and "kernel " in script
            status, body = _http(daemon, f"/api/hosts/{MAC}/installed", "POST", token)
            # the token cannot be checked: refused as unavailable, never as a bad token
            assert status == 503 and "the state store is unavailable" in body, (status, body)
        finally:
            pg_cluster.start()
        deadline = time.monotonic() + 30
        while (result := _http(daemon, f"/api/hosts/{MAC}/installed", "POST", token))[0] != 200:
            assert time.monotonic() < deadline, f"no reconnect within 30 s: {result}"
            time.sleep(0.5)
        assert json.loads(result[1])["state"] == "installed"
        assert _http(daemon, f"/boot?mac={MAC}")[1].rstrip().endswith("exit")
        assert daemon.proc.poll() is None, "the daemon died"
    finally:
        assert daemon.stop() == 0, daemon.text()[-3000:]
    assert "Traceback" not in daemon.text(), daemon.text()[-3000:]

    again = start_daemon_usernet(dirs, "--state-url", url)  # a restart: history from the database
    try:
        events = json.loads(_http(again, f"/api/hosts/{MAC}/events")[1])["events"]
        stages = [e["stage"] for e in events]
        assert stages[:2] == ["script", "script"] and "installed" in stages, stages
    finally:
        assert again.stop() == 0

"""`pxelab serve` as a process: settings errors, HTTP-only mode, live host reload, clean stop."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

PXELAB = [sys.executable, "-m", "pxelab"]


def run_pxelab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PXELAB, *args], capture_output=True, text=True, timeout=30)


def test_version() -> None:
    proc = run_pxelab("--version")
    assert proc.returncode == 0
    assert re.fullmatch(r"pxelab \d+\.\d+\.\d+\n", proc.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-port", "eighty"], "command line: key 'http_port'"),
        (["--dhcp-range", "10.0.0.9-10.0.0.1"], "key 'dhcp_range'"),
        (["--interface", "lo"], "key 'dhcp_range' is required"),
        (["--config", "/nonexistent/pxelab.toml"], "/nonexistent/pxelab.toml: cannot read"),
        (
            ["--interface", "nope0", "--dhcp-range", "10.0.0.2-10.0.0.9", "--http-port", "0"],
            "key 'interface'",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_clear_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    dirs = [
        "--hosts-dir",
        str(tmp_path / "h"),
        "--images-dir",
        str(tmp_path / "i"),
        "--tftp-root",
        str(tmp_path / "t"),
        "--state-dir",
        str(tmp_path / "s"),
    ]
    proc = run_pxelab("serve", *dirs, *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_key_in_toml_is_named(tmp_path: Path) -> None:
    config = tmp_path / "pxelab.toml"
    config.write_text('http_port = 8080\nhosts_dri = "/tmp"\n')
    proc = run_pxelab("serve", "--config", str(config))
    assert proc.returncode == 2
    assert f"{config}: unknown key 'hosts_dri'" in proc.stderr


def _wait_ready(proc: subprocess.Popen[str], log: Path, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"pxelab ready: http on [\d.]+:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise TimeoutError(log.read_text())


def _until_served(url: str, timeout: float = 20) -> str:
    """The body of url once it answers 200 (a new host file is picked up within 0.5 s or so)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url) as resp:
                return str(resp.read().decode())
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and time.monotonic() < deadline, exc
        time.sleep(0.05)


def test_http_only_serve_reload_and_clean_stop(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.mkdir()
    (hosts / "a.json").write_text(
        json.dumps({"name": "a", "mac": "52:54:00:00:00:0a", "distro": "d"})
    )
    log = tmp_path / "pxelab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*PXELAB, "serve", "--http-address", "127.0.0.1", "--http-port", "0", "--tftp-port", "0",
             "--hosts-dir", str(hosts), "--images-dir", str(tmp_path / "images"),
             "--tftp-root", str(tmp_path / "tftp"), "--state-dir", str(tmp_path / "state")],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        port = _wait_ready(proc, log)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/boot?mac=52-54-00-00-00-0A") as resp:
            assert "images/d/amd64/vmlinuz" in resp.read().decode()
        # a host file added while serving is used without a restart
        (hosts / "b.json").write_text(
            json.dumps({"name": "b", "mac": "52:54:00:00:00:0b", "distro": "e"})
        )
        assert "images/e/amd64/vmlinuz" in _until_served(f"{base}/boot?mac=52:54:00:00:00:0b")
        # a broken file is reported and skipped; the others keep booting
        (hosts / "c.json").write_text("{")
        deadline = time.monotonic() + 20  # the inventory rescans at most every 0.5 s
        while not re.search(r"c\.json: invalid JSON", log.read_text()):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with urllib.request.urlopen(f"{base}/boot?mac=52:54:00:00:00:0a") as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert "dhcp off (no --interface)" in text
    assert re.search(r"c\.json: invalid JSON", text), text
    assert re.search(r"GET /boot\?mac=52-54-00-00-00-0A 200 \d+B .*\(host a\)", text), text
    assert "pxelab stopping" in text


def test_sigint_stops_cleanly_with_every_service(tmp_path: Path) -> None:
    """TFTP on a free high port plus HTTP; Ctrl-C (SIGINT) gives exit 0 and no traceback."""
    log = tmp_path / "pxelab.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*PXELAB, "serve", "--http-address", "127.0.0.1", "--http-port", "0",
             "--tftp-address", "127.0.0.1", "--tftp-port", "16969",
             "--hosts-dir", str(tmp_path / "hosts"), "--images-dir", str(tmp_path / "images"),
             "--tftp-root", str(tmp_path / "tftp"), "--state-dir", str(tmp_path / "state")],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        _wait_ready(proc, log)
        assert "tftp on port 16969" in log.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text and "pxelab stopping" in text

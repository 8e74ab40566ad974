"""`--user NAME`: pxelab binds its privileged ports as root, then serves DHCP, TFTP and HTTP as NAME."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import lab

MAC = "52:54:00:77:00:01"


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="pxelab-user-"))
    top.chmod(0o755)  # pytest's own tmp dirs are 0700: the user nobody could not read the files
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _ids(pid: int) -> tuple[list[str], list[str]]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(line.split()[1:] for line in status if line.startswith("Uid:"))
    gid = next(line.split()[1:] for line in status if line.startswith("Gid:"))
    return uid, gid


@pytest.mark.netns
def test_serves_everything_after_dropping_to_nobody(world_readable_dir: Path) -> None:
    with lab() as the_lab:
        dirs = bootlab.prepare(
            world_readable_dir / "lab",
            [{"name": "u", "mac": MAC, "ip": the_lab.ip(70), "distro": "demo"}],
        )
        daemon = bootlab.start_daemon(the_lab, dirs, "--user", "nobody")
        try:
            assert _ids(daemon.proc.pid) == (["65534"] * 4, ["65534"] * 4)
            assert dirs.state.stat().st_uid == 65534
            client = the_lab.add_client(MAC)
            lease = client.run("udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1", "-s", "/bin/true",
                               timeout=30)  # fmt: skip
            assert lease.returncode == 0, daemon.text()
            client.run("ip", "addr", "add", f"{the_lab.ip(70)}/24", "dev", "eth0")
            got = world_readable_dir / "ipxe.efi"
            server = the_lab.server_ip
            client.run(
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-o",
                str(got),
                f"tftp://{server}/ipxe.efi",
                timeout=30,
            )
            assert got.read_bytes() == (dirs.tftp / "ipxe.efi").read_bytes()
            script = client.run(
                "curl", "-sS", "--max-time", "10", f"http://{server}:8080/boot?mac={MAC}"
            )
            assert "#!ipxe" in script.stdout
        finally:
            code = daemon.stop()
        log = daemon.text()
        assert code == 0, log
        assert "running as user nobody (uid 65534" in log
        assert f"ACK {the_lab.ip(70)}" in log, log
        assert "Traceback" not in log


def test_unknown_user_is_a_settings_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "pxelab", "serve", "--user", "no-such-user-here", "--http-port", "0",
         "--tftp-port", "0", "--hosts-dir", str(tmp_path / "h"), "--images-dir", str(tmp_path / "i"),
         "--tftp-root", str(tmp_path / "t"), "--state-dir", str(tmp_path / "s"),
         "--http-address", "127.0.0.1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "key 'user': no user 'no-such-user-here'" in proc.stderr
    assert json.dumps("Traceback") not in proc.stderr and "Traceback" not in proc.stderr

"""QEMU user-mode network: VMs boot from pxelab over HTTP with no root, through the pytest fixtures.

The second test proves that no step needs root: it installs pxelab into a world-readable
virtualenv and runs the copyable example test and `pxelab demo` as the unprivileged user nobody.
"""

from __future__ import annotations

import json
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pxelab.testing.netns import require_root
from pxelab.testing.pytest_plugin import PxelabServer
from pxelab.testing.qemu import QemuVm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "test_boot_example.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's; the CI user's own Python may sit under /root (0700)


@pytest.mark.e2e
@pytest.mark.pxelab(network="user")
def test_usernet_fixtures_boot_per_mac(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]
) -> None:
    pxelab_server.add_host("u1", "52:54:00:00:0a:01", kernel_args="quiet pxelab.who=u1")
    pxelab_server.add_host("u2", "52:54:00:00:0a:02", kernel_args="quiet pxelab.who=u2")
    vm = qemu_vm("52:54:00:00:0a:02")
    found = vm.wait_for(r"PXELAB-BOOT-OK mac=(\S+) cmdline=(.*)", timeout=240)
    assert found.group(1) == "52:54:00:00:0a:02"
    assert "pxelab.who=u2" in found.group(2)  # the per-MAC script, via iPXE's ${netX/mac}
    assert re.search(r"GET /boot\?mac=\S+ 200 \d+B \S+ \(host u2\)", pxelab_server.log)


@pytest.fixture(scope="module")
def world_venv() -> Iterator[Path]:
    """pxelab and pytest installed in a virtualenv that the user nobody can read and run."""
    require_root()
    top = Path(tempfile.mkdtemp(prefix="pxelab-nobody-"))
    top.chmod(0o755)
    venv = top / "venv"
    try:
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(venv / "bin/python"), "-m", "pip", "install", "-q", str(ROOT), "pytest"],
            check=True,
            timeout=600,
        )
        shutil.copy(EXAMPLE, top / EXAMPLE.name)
        for path in [top, *top.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o005 | (0o050 if path.is_dir() else 0))
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


WHO_AM_I = "import os; print(os.getuid(), os.geteuid(), os.getegid())"


def _as_nobody(top: Path, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{top}/venv/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", "nobody", "--", *argv],
        cwd="/tmp",
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.e2e
@pytest.mark.root
def test_no_step_needs_root(world_venv: Path) -> None:
    tests = _as_nobody(
        world_venv,
        f"{world_venv}/venv/bin/python", "-m", "pytest", "-p", "no:cacheprovider", "-v",
        str(world_venv / EXAMPLE.name),
        timeout=400,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "1 passed" in tests.stdout
    demo = _as_nobody(world_venv, f"{world_venv}/venv/bin/pxelab", "demo", timeout=400)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "network mode 'user'" in demo.stdout  # no root: the demo picks user-mode by itself
    assert re.search(r"booted in [\d.]+s: PXELAB-BOOT-OK mac=52:54:00:de:30:01", demo.stdout)
    # What ran above ran through the same wrapper; show that it runs as nobody, not root.
    who = _as_nobody(world_venv, f"{world_venv}/venv/bin/python", "-c", WHO_AM_I, timeout=60)
    nobody = pwd.getpwnam("nobody")
    assert who.stdout.split() == [str(nobody.pw_uid), str(nobody.pw_uid), str(nobody.pw_gid)]
    assert nobody.pw_uid != 0 and nobody.pw_gid != 0


@pytest.mark.e2e
@pytest.mark.pxelab(network="user")
def test_a_pvmlab_image_tree_boots_unchanged(
    pxelab_server: PxelabServer, qemu_vm: Callable[..., QemuVm]
) -> None:
    """pvmlab's `images/<distro>/x86_64/` and its VM JSON, as pvmlab writes them: the script,
    explain and the status page all use the path that exists."""
    images = pxelab_server.dirs.images
    (images / "pvm-distro").mkdir()
    (images / "demo" / "amd64").rename(images / "pvm-distro" / "x86_64")
    mac = "52:54:00:00:0a:11"
    pxelab_server.add_host(
        "pvm1", mac, role="worker", ip="192.168.254.10/24", subnet="192.168.254.0/24",
        distro="pvm-distro", pxeboot=True, template="generic", kernel_args="quiet",
    )  # fmt: skip
    base = f"http://127.0.0.1:{pxelab_server.daemon.http_port}"
    deadline = time.monotonic() + 30  # until the daemon's next scan of the hosts and images
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/explain/{mac}") as response:
                kernel = json.load(response)["images"]["kernel"]
            if kernel["found"]:
                break
        except urllib.error.HTTPError as exc:
            assert exc.code == 404  # the host file is not scanned yet
        assert time.monotonic() < deadline, "the new host and image tree were never picked up"
        time.sleep(0.1)
    assert kernel["path"] == "pvm-distro/x86_64/vmlinuz" and kernel["found"] is True
    with urllib.request.urlopen(f"{base}/") as response:
        assert "<code>pvm-distro/x86_64/vmlinuz</code>" in response.read().decode()
    vm = qemu_vm(mac)
    found = vm.wait_for(r"PXELAB-BOOT-OK mac=(\S+) cmdline=(.*)", timeout=240)
    assert found.group(1) == mac
    assert re.search(r"GET /images/pvm-distro/x86_64/vmlinuz 200 ", pxelab_server.log)
    assert re.search(r"GET /images/pvm-distro/x86_64/initrd 200 ", pxelab_server.log)

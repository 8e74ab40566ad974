"""The README's quick start, taken from README.md and run line by line as root: the front door
cannot drift from what works.

`make install` runs first, on this machine (pip fetches pxelab's dependencies from PyPI, as the
`nobody` test's install does), into a temporary prefix instead of /opt/pxelab; every other line
runs as written in a private network namespace (the bridge is made there), with HOME in the
test's directory. Then a client on the bridge leases an address and fetches its boot script.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pxelab.testing.netns import NetNs, require_root, sh, stop_process

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARK = "<!-- quick-start -->"
MAC = "52:54:00:ab:cd:ef"


def quickstart() -> list[str]:
    """The commands of the README's quick-start block, comments stripped."""
    block = README.read_text().split(MARK, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_quick_start_block_is_what_this_test_expects() -> None:
    lines = quickstart()
    assert lines[1] == "make install" and lines[2].startswith("export PATH=/opt/pxelab/bin")
    assert lines[-1].startswith("pxelab serve --interface br-lab ")
    assert any(line.startswith("ip link add br-lab type bridge") for line in lines)


@pytest.fixture
def namespace() -> Iterator[tuple[NetNs, NetNs]]:
    """An empty namespace for the quick start, and a client namespace to cable to its bridge."""
    require_root()
    server, client = NetNs(f"pxlqs{os.getpid()}"), NetNs(f"pxlqs{os.getpid()}c")
    sh("ip", "netns", "add", server.name)
    sh("ip", "netns", "add", client.name)
    try:
        server.run("ip", "link", "set", "lo", "up")
        yield server, client
    finally:
        sh("ip", "netns", "del", client.name, check=False)
        sh("ip", "netns", "del", server.name, check=False)


def test_the_readme_quick_start_runs_as_written(
    tmp_path: Path, namespace: tuple[NetNs, NetNs]
) -> None:
    server, client = namespace
    lines = quickstart()
    prefix, home = tmp_path / "opt" / "pxelab", tmp_path / "home"
    home.mkdir()
    install = subprocess.run(
        ["make", "install", f"PREFIX={prefix}"], cwd=ROOT, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    env = {"HOME": str(home), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    # apt-get waits for dpkg's lock as a user would (unattended-upgrades holds it on a fresh
    # machine) instead of failing at once; APT_CONFIG adds this file to apt's own configuration
    wait = tmp_path / "apt-wait.conf"
    wait.write_text('DPkg::Lock::Timeout "600";\n')
    env["APT_CONFIG"] = str(wait)
    script = [line.replace("/opt/pxelab", str(prefix)) for line in lines if line != "make install"]
    setup, serve = "\n".join(["set -e", *script[:-1]]), script[-1]
    done = subprocess.run(
        server.argv("sh", "-c", setup), cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / ".pxelab/tftp/ipxe.efi").is_file() and (
        home / ".pxelab/tftp/shimx64.efi"
    ).is_file()
    assert (home / ".pxelab/hosts/worker-1.json").is_file()

    log = tmp_path / "serve.log"
    with log.open("w") as out:
        daemon = server.popen(
            "sh", "-c", f"export PATH={prefix}/bin:$PATH; exec {serve}",
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "pxelab ready" not in log.read_text():
            assert daemon.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        ready = log.read_text()
        assert "tftp on port 69" in ready and "dhcp on br-lab (10.10.0.1/24)" in ready, ready
        server.run("ip", "link", "add", "vqs0", "type", "veth", "peer", "name", "eth0",
                   "netns", client.name)  # fmt: skip
        server.run("ip", "link", "set", "vqs0", "master", "br-lab", "up")
        client.run("ip", "link", "set", "eth0", "address", MAC)
        client.run("ip", "link", "set", "eth0", "up")
        lease = client.run(
            "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "2", "-A", "1",
            timeout=60, check=False,
        )  # fmt: skip
        assert "lease of 10.10.0.1" in lease.stderr + lease.stdout, lease.stderr + log.read_text()
        got = client.run("curl", "-sf", f"http://10.10.0.1:8080/boot?mac={MAC}", check=False)
        assert got.returncode == 0 and got.stdout.startswith("#!ipxe"), got.stderr
        assert "/preseed/worker-1" in got.stdout  # the host the quick start added (debian-12)
    finally:
        code = stop_process(daemon)
    text = log.read_text()
    assert code == 0, text
    assert re.search(rf"ACK 10\.10\.0\.1\d\d .*{MAC}|{MAC}.*ACK 10\.10\.0\.1\d\d", text), text

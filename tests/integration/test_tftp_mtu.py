"""The blksize cap at the path MTU, on a real link: a client asking for the largest blksize gets
the link's MTU minus 32 (IPv4 + UDP + TFTP headers), and every DATA fits one frame."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_tftp_netns import SERVER
from tests.netns import NetNs, lab

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
sock.sendto(b"\\0\\1ipxe.efi\\0octet\\0blksize\\0" + b"65464\\0", (sys.argv[1], 69))
oack, tid = sock.recvfrom(70000)
assert oack[:2] == b"\\0\\6", oack[:40]
fields = oack[2:].split(b"\\0")
granted = int(fields[fields.index(b"blksize") + 1])
sock.sendto(b"\\0\\4\\0\\0", tid)
data, _ = sock.recvfrom(70000)
assert data[:4] == b"\\0\\3\\0\\1", data[:4]
print(granted, len(data) - 4)
"""
"""Ask for blksize 65464; print the blksize granted and the payload of DATA 1."""


def _set_mtu(ns: NetNs, mtu: int, *devices: str) -> None:
    for device in devices:
        ns.run("ip", "link", "set", "dev", device, "mtu", str(mtu))


def test_blksize_is_capped_at_the_path_mtu(tmp_path: Path) -> None:
    (tmp_path / "ipxe.efi").write_bytes(os.urandom(100_000))
    with lab() as the_lab:
        client = the_lab.add_client()
        client.run("ip", "addr", "add", f"{the_lab.ip(50)}/24", "dev", "eth0")
        ports = the_lab.server.run("ip", "-o", "link", "show", "master", the_lab.bridge).stdout
        port = ports.split(":")[1].strip().split("@")[0]  # the bridge's port to the client
        server = the_lab.server.popen(
            sys.executable, "-c", SERVER, str(tmp_path),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        try:
            assert server.stdout is not None and server.stdout.readline() == "ready\n"
            granted = {}
            for mtu in (1500, 576, 1280):
                _set_mtu(client, mtu, "eth0")
                _set_mtu(the_lab.server, mtu, port, the_lab.bridge)
                probe = client.run(sys.executable, "-c", PROBE, the_lab.server_ip)
                blksize, payload = map(int, probe.stdout.split())
                assert payload == blksize  # the first DATA is a full block of that size
                granted[mtu] = blksize
            assert granted == {1500: 1468, 576: 544, 1280: 1248}
        finally:
            server.kill()
            server.wait()

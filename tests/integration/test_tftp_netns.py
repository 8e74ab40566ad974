"""TFTP on a multi-homed server in a namespace: answers come from the address the client asked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import Lab, NetNs, lab

pytestmark = pytest.mark.netns

SERVER = """
import asyncio, sys
from pathlib import Path
from pxelab.tftp.server import start_tftp

async def main():
    server = await start_tftp(Path(sys.argv[1]), "0.0.0.0", 69)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()

asyncio.run(main())
"""

PROBE = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
sock.sendto(b"\\0\\1" + sys.argv[2].encode() + b"\\0octet\\0", (sys.argv[1], 69))
data, (host, port) = sock.recvfrom(2048)
print(host, port, data[:2].hex())
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tftp-netns")
    (root / "ipxe.efi").write_bytes(os.urandom(200_000))
    return root


@pytest.fixture(scope="module")
def multihomed(root: Path) -> Iterator[tuple[Lab, NetNs]]:
    """A server namespace with two addresses on its bridge, pxelab's TFTP on 0.0.0.0, a client."""
    with lab() as the_lab:
        the_lab.server.run("ip", "addr", "add", f"{the_lab.ip(2)}/24", "dev", the_lab.bridge)
        client = the_lab.add_client()
        client.run("ip", "addr", "add", f"{the_lab.ip(50)}/24", "dev", "eth0")
        server = the_lab.server.popen(
            sys.executable,
            "-c",
            SERVER,
            str(root),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        try:
            assert server.stdout is not None and server.stdout.readline() == "ready\n"
            yield the_lab, client
        finally:
            server.kill()
            server.wait()


@pytest.mark.parametrize("host", [1, 2])
def test_answers_come_from_the_address_asked(
    multihomed: tuple[Lab, NetNs], host: int, tmp_path: Path
) -> None:
    the_lab, client = multihomed
    address = the_lab.ip(host)
    for name, opcode in (("ipxe.efi", "0003"), ("missing.efi", "0005")):
        out = client.run(sys.executable, "-c", PROBE, address, name).stdout.split()
        assert out[0] == address, out  # DATA and ERROR alike
        assert out[2] == opcode, out


@pytest.mark.parametrize("host", [1, 2])
def test_real_clients_fetch_from_either_address(
    multihomed: tuple[Lab, NetNs], root: Path, host: int, tmp_path: Path
) -> None:
    the_lab, client = multihomed
    address = the_lab.ip(host)
    curl_out, atftp_out = tmp_path / "curl.bin", tmp_path / "atftp.bin"
    client.run("curl", "-sS", "-o", str(curl_out), f"tftp://{address}/ipxe.efi")
    client.run(
        "atftp", "--option", "windowsize 8", "--option", "blksize 1428",
        "-g", "-r", "ipxe.efi", "-l", str(atftp_out), address,
    )  # fmt: skip
    expected = (root / "ipxe.efi").read_bytes()
    assert curl_out.read_bytes() == expected
    assert atftp_out.read_bytes() == expected

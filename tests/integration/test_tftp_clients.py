"""Real TFTP clients (curl, atftp, tftp-hpa, tftpy) fetch from the server on loopback."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import tftpy

from pxelab.tftp.server import TftpServer, start_tftp
from tests.integration.test_tftp_server import until

HOST = "127.0.0.1"
MIB = 1 << 20
EXACT = 512 * 367 * 4  # 751616 bytes: a multiple of both 512 and 1468 (= 4 * 367)
TEXT = b"#!ipxe\nchain http://10.0.0.1/boot.ipxe\r\nbare CR\rend\n"
WRAP = 8 * 66000  # blksize 8: 66001 blocks, past 65535


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tftp-root")
    (root / "big.bin").write_bytes(os.urandom(MIB))
    (root / "exact.bin").write_bytes(os.urandom(EXACT))
    (root / "exact1428.bin").write_bytes(os.urandom(1428 * 100))
    (root / "wrap.bin").write_bytes(os.urandom(WRAP))
    (root / "boot.ipxe").write_bytes(TEXT)
    (root / "escape").symlink_to("/etc/passwd")
    return root


@pytest.fixture
async def server(root: Path) -> AsyncIterator[TftpServer]:
    tftp = await start_tftp(root, HOST, 0)
    yield tftp
    tftp.close()
    await tftp.wait_closed()


async def run(*argv: str, timeout: float = 20.0) -> tuple[int, str]:
    """Run a client while the event loop keeps serving; return its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def same(got: Path, root: Path, name: str) -> bool:
    return got.read_bytes() == (root / name).read_bytes()


# --- curl ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["big.bin", "exact.bin"])
@pytest.mark.parametrize("blksize", [None, "1468"])
async def test_curl(
    server: TftpServer, root: Path, tmp_path: Path, name: str, blksize: str | None
) -> None:
    extra = ["--tftp-blksize", blksize] if blksize else []
    url = f"tftp://{HOST}:{server.port}/{name}"
    code, output = await run("curl", "-sS", *extra, "-o", str(tmp_path / "out"), url)
    assert code == 0, output
    assert same(tmp_path / "out", root, name)


@pytest.mark.parametrize(
    ("path", "curl_code"),
    [
        ("missing.efi", 68),  # TFTP: file not found
        ("../etc/passwd", 69),  # TFTP: permission problem
        ("escape", 69),
    ],
)
async def test_curl_errors(server: TftpServer, tmp_path: Path, path: str, curl_code: int) -> None:
    url = f"tftp://{HOST}:{server.port}/{path}"
    code, output = await run("curl", "-sS", "--path-as-is", "-o", str(tmp_path / "out"), url)
    assert code == curl_code, output


async def test_curl_upload_is_refused(server: TftpServer, root: Path) -> None:
    url = f"tftp://{HOST}:{server.port}/uploaded"
    code, output = await run("curl", "-sS", "-T", str(root / "boot.ipxe"), url)
    assert code == 69, output
    assert not (root / "uploaded").exists()


async def test_parallel_curls(server: TftpServer, root: Path, tmp_path: Path) -> None:
    url = f"tftp://{HOST}:{server.port}/big.bin"
    outs = [tmp_path / f"out{i}" for i in range(4)]
    results = await asyncio.gather(*(run("curl", "-sS", "-o", str(o), url) for o in outs))
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert all(same(o, root, "big.bin") for o in outs)


# --- atftp (the packaged client with windowsize) ------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("big.bin", []),
        ("big.bin", ["blksize 1428"]),
        ("big.bin", ["blksize 1428", "windowsize 4"]),
        ("exact1428.bin", ["blksize 1428", "windowsize 4"]),
        ("exact.bin", ["tsize", "blksize 1468", "windowsize 16"]),
        ("wrap.bin", ["blksize 8", "windowsize 16"]),
    ],
)
async def test_atftp(
    server: TftpServer, root: Path, tmp_path: Path, name: str, options: list[str]
) -> None:
    option_args = [arg for option in options for arg in ("--option", option)]
    out = tmp_path / "out"
    argv = ["atftp", *option_args, "-g", "-r", name, "-l", str(out), HOST, str(server.port)]
    code, output = await run(*argv)
    assert code == 0, output
    assert same(out, root, name)


async def test_atftp_missing_and_upload(server: TftpServer, root: Path, tmp_path: Path) -> None:
    port = str(server.port)
    code, output = await run("atftp", "-g", "-r", "nope", "-l", str(tmp_path / "o"), HOST, port)
    assert code != 0
    assert "file not found" in output
    code, output = await run("atftp", "-p", "-r", "up", "-l", str(root / "boot.ipxe"), HOST, port)
    assert code != 0
    assert "read-only server" in output


# --- tftp-hpa -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["big.bin", "exact.bin"])
async def test_tftp_hpa_binary(server: TftpServer, root: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    argv = ["tftp", HOST, str(server.port), "-m", "binary", "-c", "get", name, str(out)]
    code, output = await run(*argv)
    assert code == 0, output
    assert same(out, root, name)


async def test_tftp_hpa_netascii(server: TftpServer, root: Path, tmp_path: Path) -> None:
    """tftp-hpa's default mode is netascii: it undoes our CR LF / CR NUL encoding."""
    out = tmp_path / "out"
    code, output = await run("tftp", HOST, str(server.port), "-c", "get", "boot.ipxe", str(out))
    assert code == 0, output
    assert out.read_bytes() == TEXT


async def test_tftp_hpa_errors(server: TftpServer, root: Path, tmp_path: Path) -> None:
    # tftp-hpa exits 0 on a server ERROR; it prints the code instead.
    port = str(server.port)
    _, output = await run(
        "tftp", HOST, port, "-m", "binary", "-c", "get", "nope", str(tmp_path / "x")
    )
    assert "Error code 1" in output
    _, output = await run("tftp", HOST, port, "-c", "put", str(root / "boot.ipxe"), "up")
    assert "Error code 2" in output
    assert not (root / "up").exists()


# --- tftpy (client only) ------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"blksize": 1468}, {"blksize": 1468, "tsize": 0}])
async def test_tftpy(
    server: TftpServer, root: Path, tmp_path: Path, options: dict[str, int]
) -> None:
    out = tmp_path / "out"
    client = tftpy.TftpClient(HOST, server.port, options=options)
    await asyncio.to_thread(client.download, "big.bin", str(out), timeout=5)
    assert same(out, root, "big.bin")


async def test_tftpy_upload_is_refused(server: TftpServer, root: Path) -> None:
    client = tftpy.TftpClient(HOST, server.port)
    with pytest.raises(Exception, match=r"read-only server|Access violation"):
        await asyncio.to_thread(client.upload, "up", str(root / "boot.ipxe"), timeout=2)


# --- the log ------------------------------------------------------------------------------


async def test_one_info_line_per_request(
    server: TftpServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    base = f"tftp://{HOST}:{server.port}"
    await run("curl", "-sS", "-o", str(tmp_path / "a"), f"{base}/big.bin")
    await run("curl", "-sS", "-o", str(tmp_path / "b"), f"{base}/missing.efi")
    # curl exits after its last ACK, maybe before the server has read it: wait for both lines
    await until(lambda: sum(" RRQ " in r.getMessage() for r in caplog.records) >= 2)
    lines = [r.getMessage() for r in caplog.records if " RRQ " in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{HOST}:")
    assert f"RRQ 'big.bin': sent {MIB} bytes in" in lines[0]
    assert "RRQ 'missing.efi': error 1 (file not found)" in lines[1]

"""TFTP windows sent by UDP GSO, and the fallback to one send per block where GSO is refused."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pxelab.tftp import transfer
from pxelab.tftp.batch import GSO, send_run
from pxelab.tftp.server import start_tftp
from pxelab.tftp.session import SessionConfig
from tests.integration.test_tftp_hardening import fetch_windowed, open_client
from tests.integration.test_tftp_server import HOST


@pytest.fixture
def big(tmp_path: Path) -> Path:
    (tmp_path / "big.bin").write_bytes(os.urandom(300_000 + 77))  # a short last block
    return tmp_path


@pytest.fixture
def gso_on() -> Iterator[None]:
    was = GSO.enabled
    GSO.enabled = True
    yield
    GSO.enabled = was


async def _fetch(root: Path, windowsize: int) -> bytes:
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=5))
    client = await open_client()
    try:
        return await fetch_windowed(client, tftp.port, "big.bin", 1428, windowsize)
    finally:
        client.close()
        tftp.close()
        await tftp.wait_closed()


async def test_a_window_goes_in_gso_runs(
    big: Path, gso_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[int] = []

    def counting(sock: socket.socket, datagrams: Sequence[bytes], size: int) -> None:
        runs.append(len(datagrams))
        send_run(sock, datagrams, size)

    monkeypatch.setattr(transfer, "send_run", counting)
    assert await _fetch(big, 16) == (big / "big.bin").read_bytes()
    blocks = -(-300_077 // 1428)
    assert sum(runs) >= blocks - 16  # every full window in one sendmsg
    assert max(runs) == 16 and len(runs) <= blocks // 16 + 2


async def test_a_refused_gso_send_falls_back_to_one_send_per_block(
    big: Path, gso_on: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def refusing(sock: socket.socket, datagrams: Sequence[bytes], size: int) -> None:
        calls.append(len(datagrams))
        raise OSError(errno.EIO, "Input/output error")  # a device without checksum offload

    monkeypatch.setattr(transfer, "send_run", refusing)
    caplog.set_level("INFO", "pxelab.tftp")
    assert await _fetch(big, 16) == (big / "big.bin").read_bytes()
    assert calls == [16]  # tried once, then never again
    assert not GSO.enabled
    assert "UDP GSO unavailable" in caplog.text


async def test_without_gso_every_window_size_is_served_whole(big: Path, gso_on: None) -> None:
    GSO.enabled = False
    for windowsize in (1, 4, 16, 64):
        assert await _fetch(big, windowsize) == (big / "big.bin").read_bytes()

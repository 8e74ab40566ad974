"""The TFTP server on loopback, driven packet by packet: confinement, refusals, timers, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from pxelab.events import Timeline
from pxelab.tftp.files import FileCache
from pxelab.tftp.packet import (
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    OptionAck,
    Packet,
    ReadRequest,
    WriteRequest,
    build,
    parse,
)
from pxelab.tftp.server import TftpServer, start_tftp
from pxelab.tftp.session import SessionConfig

HOST = "127.0.0.1"
QUIET = 1.0
"""Seconds of silence that show no answer is coming: an answer on loopback takes far less than
that even on a loaded 2-core machine, and the servers of these tests retransmit only after 5 s
(or have ended the exchange), so no retransmission falls inside the window."""
MAC = "52:54:00:00:00:01"
Address = tuple[str, int]


class RawClient(asyncio.DatagramProtocol):
    """A UDP socket on loopback that sends packets and queues what comes back."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> RawClient:
        loop = asyncio.get_running_loop()
        _, client = await loop.create_datagram_endpoint(cls, local_addr=(HOST, 0))
        return client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.inbox.put_nowait((data, addr))

    def send(self, packet: Packet | bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(packet if isinstance(packet, bytes) else build(packet), addr)

    async def recv(self, timeout: float = 10.0) -> tuple[Packet, Address]:
        """The next datagram; the timeout only bounds a hang (answers come in milliseconds)."""
        data, addr = await asyncio.wait_for(self.inbox.get(), timeout)
        return parse(data), addr

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def drain(self) -> None:
        """Forget what has arrived so far."""
        while not self.inbox.empty():
            self.inbox.get_nowait()

    async def nothing_for(self, seconds: float) -> bool:
        """True when nothing arrives within `seconds`. Use QUIET, after a positive signal (a log
        line, a counter) that the server has decided on what it got, where there is one."""
        try:
            await asyncio.wait_for(self.inbox.get(), seconds)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "grub").mkdir(parents=True)
    (root / "small.bin").write_bytes(bytes(range(256)) * 5)  # 1280 bytes: blocks of 512, 512, 256
    (root / "grub" / "grub.cfg").write_text("set timeout=1\n")
    (tmp_path / "secret").write_text("do not serve\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x").write_text("x\n")
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "dir-out").symlink_to("../outside")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
async def server(root: Path) -> AsyncIterator[TftpServer]:
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=5.0))
    yield tftp
    tftp.close()
    await tftp.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[RawClient]:
    raw = await RawClient.open()
    yield raw
    raw.close()


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for a positive signal (polling every 20 ms); fail after `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "the signal never came"
        await asyncio.sleep(0.02)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "pxelab.tftp"]


async def fetch(client: RawClient, port: int, filename: str) -> bytes:
    """Read a file lockstep, without options."""
    client.send(ReadRequest(filename, "octet"), (HOST, port))
    content = bytearray()
    while True:
        packet, tid = await client.recv()
        assert isinstance(packet, Data), packet
        content += packet.data
        client.send(Ack(packet.block), tid)
        if len(packet.data) < 512:
            return bytes(content)


async def test_lockstep_read_from_a_new_port(
    server: TftpServer, client: RawClient, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    client.send(ReadRequest("/small.bin", "octet"), (HOST, server.port))
    packet, tid = await client.recv()
    assert packet == Data(1, (root / "small.bin").read_bytes()[:512])
    assert tid[1] != server.port
    other = await RawClient.open()
    try:
        assert await fetch(other, server.port, "small.bin") == (root / "small.bin").read_bytes()
    finally:
        other.close()
    # the last ACK is sent before the server has read it: wait for the line, do not sleep
    await until(lambda: "RRQ 'small.bin': sent 1280 bytes in" in caplog.text)


async def test_tsize_then_error_8_is_a_normal_end(
    server: TftpServer, client: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    options = {"tsize": "0", "blksize": "1468"}
    client.send(ReadRequest("small.bin", "octet", options), (HOST, server.port))
    packet, tid = await client.recv()
    assert packet == OptionAck({"tsize": "1280", "blksize": "1468"})
    client.send(ErrorPacket(ErrorCode.OPTION_NEGOTIATION, "got the size"), tid)
    ended = "RRQ 'small.bin': aborted after OACK (tsize 1280), client error 8"
    await until(lambda: ended in caplog.text)  # the session has ended: then nothing more comes
    assert await client.nothing_for(QUIET)


async def test_largest_blksize_on_loopback(server: TftpServer, client: RawClient) -> None:
    client.send(ReadRequest("small.bin", "octet", {"blksize": "65464"}), (HOST, server.port))
    packet, tid = await client.recv()
    assert packet == OptionAck({"blksize": "65464"})
    client.send(Ack(0), tid)
    packet, _ = await client.recv()
    assert isinstance(packet, Data)
    assert len(packet.data) == 1280


@pytest.mark.parametrize(
    ("filename", "code"),
    [
        ("../secret", ErrorCode.ACCESS_VIOLATION),
        ("/../secret", ErrorCode.ACCESS_VIOLATION),
        ("grub/../../secret", ErrorCode.ACCESS_VIOLATION),
        ("..\\secret", ErrorCode.ACCESS_VIOLATION),
        ("escape", ErrorCode.ACCESS_VIOLATION),
        ("dir-out/x", ErrorCode.ACCESS_VIOLATION),
        ("grub", ErrorCode.ACCESS_VIOLATION),
        ("fifo", ErrorCode.ACCESS_VIOLATION),
        ("x" * 600, ErrorCode.ACCESS_VIOLATION),
        ("/secret", ErrorCode.FILE_NOT_FOUND),  # a leading slash means the TFTP root
        ("autoexec.ipxe", ErrorCode.FILE_NOT_FOUND),
        ("small.bin/x", ErrorCode.FILE_NOT_FOUND),
    ],
)
async def test_refusals_answer_at_once_and_the_server_keeps_serving(
    server: TftpServer,
    client: RawClient,
    root: Path,
    filename: str,
    code: ErrorCode,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    client.send(ReadRequest(filename, "octet"), (HOST, server.port))
    packet, _ = await client.recv()
    assert isinstance(packet, ErrorPacket)
    assert packet.code == code
    assert f"error {int(code)} (" in caplog.text
    assert await fetch(client, server.port, "grub/grub.cfg") == b"set timeout=1\n"


async def test_write_requests_are_refused(server: TftpServer, client: RawClient) -> None:
    client.send(WriteRequest("small.bin", "octet"), (HOST, server.port))
    packet, _ = await client.recv()
    assert packet == ErrorPacket(ErrorCode.ACCESS_VIOLATION, "read-only server")


async def test_mail_mode_is_refused(server: TftpServer, client: RawClient) -> None:
    client.send(ReadRequest("small.bin", "mail"), (HOST, server.port))
    packet, _ = await client.recv()
    assert isinstance(packet, ErrorPacket)
    assert packet.code == ErrorCode.ILLEGAL_OPERATION


async def test_malformed_datagrams_are_logged_and_survived(
    server: TftpServer, client: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    for junk in (b"\x00", b"\x00\x09zz", b"\xff" * 100, b"\x00\x03\x00"):
        client.send(junk, (HOST, server.port))
    await until(lambda: len(_warnings(caplog)) == 4)  # each was read and judged ...
    assert await client.nothing_for(QUIET)  # ... and got no answer
    client.send(b"\x00\x01no-terminator", (HOST, server.port))
    packet, _ = await client.recv()
    assert packet == ErrorPacket(ErrorCode.ILLEGAL_OPERATION, "malformed request")
    warnings = _warnings(caplog)
    assert len(warnings) == 5
    assert all(f"{HOST}:" in r.getMessage() for r in warnings)
    assert "unknown opcode 9" in caplog.text
    assert len(await fetch(client, server.port, "small.bin")) == 1280


async def test_malformed_datagram_during_a_transfer_is_ignored(
    server: TftpServer, client: RawClient
) -> None:
    client.send(ReadRequest("small.bin", "octet"), (HOST, server.port))
    _, tid = await client.recv()
    client.send(b"\x00\x04", tid)
    client.send(Ack(1), tid)
    packet, _ = await client.recv()
    assert isinstance(packet, Data)
    assert packet.block == 2


async def test_duplicate_ack_gets_no_duplicate_block(server: TftpServer, client: RawClient) -> None:
    client.send(ReadRequest("small.bin", "octet"), (HOST, server.port))
    _, tid = await client.recv()
    client.send(Ack(1), tid)
    client.send(Ack(1), tid)
    packet, _ = await client.recv()
    assert isinstance(packet, Data)
    assert packet.block == 2
    assert await client.nothing_for(QUIET)  # no second DATA 2 for the repeated ACK 1


async def test_other_ports_cannot_disturb_a_transfer(server: TftpServer, client: RawClient) -> None:
    client.send(ReadRequest("small.bin", "octet"), (HOST, server.port))
    _, tid = await client.recv()
    intruder = await RawClient.open()
    try:
        intruder.send(Ack(1), tid)
        assert await client.nothing_for(QUIET)  # (the transfer socket drops it: no signal)
    finally:
        intruder.close()
    client.send(Ack(1), tid)
    packet, _ = await client.recv()
    assert isinstance(packet, Data)
    assert packet.block == 2


async def test_retransmits_then_gives_up(
    root: Path, client: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    tftp = await start_tftp(
        root, HOST, 0, config=SessionConfig(timeout=0.1, retries=2, backoff=1.0)
    )
    try:
        client.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        copies = [await client.recv() for _ in range(3)]
        assert len({packet for packet, _ in copies}) == 1
        ended = "RRQ 'small.bin': timed out, 0 of 1280 bytes acknowledged"
        await until(lambda: ended in caplog.text)  # it gave up: no fourth copy after that
        assert await client.nothing_for(QUIET)
    finally:
        tftp.close()
        await tftp.wait_closed()


async def test_a_vanished_client_ends_the_transfer(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=0.1, retries=50))
    try:
        client = await RawClient.open()
        client.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        await client.recv()
        client.close()
        for _ in range(50):
            if "stopped, client unreachable" in caplog.text:
                break
            await asyncio.sleep(0.05)
        assert "stopped, client unreachable" in caplog.text
    finally:
        tftp.close()
        await tftp.wait_closed()


async def test_close_is_idempotent_stops_transfers_and_frees_the_port(
    root: Path, client: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    (root / "big.bin").write_bytes(os.urandom(300_000))  # read by pread: holds a descriptor
    timeline = Timeline()
    timeline.bind(HOST, MAC)
    other = await RawClient.open()
    fds_before = sorted(os.listdir("/proc/self/fd"))
    config = SessionConfig(timeout=0.05, retries=1000, backoff=1.0)
    tftp = await start_tftp(
        root, HOST, 0, config=config, cache=FileCache(max_file_bytes=4096), timeline=timeline
    )
    port = tftp.port
    try:
        client.send(ReadRequest("small.bin", "octet"), (HOST, port))
        other.send(ReadRequest("big.bin", "octet"), (HOST, port))
        _, tid_small = await client.recv()
        _, tid_big = await other.recv()
        assert (tftp.sessions, tftp.transfers, tftp.closed) == (2, 2, False)
        assert len(os.listdir("/proc/self/fd")) == len(fds_before) + 4  # listener, 2 sockets, file

        tftp.close()
        assert (tftp.sessions, tftp.transfers, tftp.closed) == (0, 0, True)
        await tftp.wait_closed()
        # Every socket and the open file are closed, and nothing of the server is left.
        assert sorted(os.listdir("/proc/self/fd")) == fds_before
        stopped = [r.getMessage() for r in caplog.records if "server closing" in r.getMessage()]
        assert set(stopped) == {
            f"{HOST}:{other.port} RRQ 'big.bin': stopped, server closing "
            "(0 of 300000 bytes acknowledged)",
            f"{HOST}:{client.port} RRQ 'small.bin': stopped, server closing "
            "(0 of 1280 bytes acknowledged)",
        }
        assert len(stopped) == 2
        details = [e.detail for e in timeline.events(MAC)]
        assert sorted(details) == [
            "big.bin: stopped, server closing (0 of 300000 bytes)",
            "small.bin: stopped, server closing (0 of 1280 bytes)",
        ]
        # The retransmission timers are cancelled (one would fire every 50 ms) and the
        # transfer sockets are gone: an ACK gets no DATA back.
        client.drain()
        other.drain()
        client.send(Ack(1), tid_small)
        other.send(Ack(1), tid_big)
        client.send(ReadRequest("small.bin", "octet"), (HOST, port))
        assert await client.nothing_for(QUIET)  # (closed sockets: no signal but silence)
        assert await other.nothing_for(0.05)  # the same window, already waited above

        # A second close (and wait) changes nothing.
        records = len(caplog.records)
        tftp.close()
        await asyncio.wait_for(tftp.wait_closed(), 1)
        assert len(caplog.records) == records
        assert len(timeline.events(MAC)) == 2
        assert sorted(os.listdir("/proc/self/fd")) == fds_before
        assert (tftp.sessions, tftp.transfers, tftp.closed) == (0, 0, True)
    finally:
        tftp.close()
        await tftp.wait_closed()
        other.close()
    again = await start_tftp(root, HOST, port)  # the port is free again
    assert again.port == port
    again.close()
    await again.wait_closed()


async def test_root_must_be_a_directory(root: Path) -> None:
    with pytest.raises(NotADirectoryError):
        await start_tftp(root / "small.bin", HOST, 0)


async def test_port_in_use_raises_oserror(server: TftpServer, root: Path) -> None:
    with pytest.raises(OSError):
        await start_tftp(root, HOST, server.port)


async def test_bound_to_a_device(root: Path, client: RawClient) -> None:
    tftp = await start_tftp(root, HOST, 0, interface="lo")  # CI runs as root: no skip
    try:
        assert await fetch(client, tftp.port, "small.bin") == (root / "small.bin").read_bytes()
    finally:
        tftp.close()
        await tftp.wait_closed()


async def test_unknown_device_fails_to_bind(root: Path) -> None:
    with pytest.raises(OSError):
        await start_tftp(root, HOST, 0, interface="no-such-if0")

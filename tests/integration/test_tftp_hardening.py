"""TFTP hardening on loopback: caps, repeated requests, reaping, the file cache, races, fuzzing,
load, and no file I/O on the event loop."""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pxelab.app.config import Config
from pxelab.boot.grub import GrubFiles
from pxelab.boot.render import Renderer
from pxelab.events import Timeline
from pxelab.hosts.install import InstallState, InstallStore
from pxelab.hosts.inventory import Inventory
from pxelab.paths import resolve
from pxelab.tftp.admission import MAX_PER_CLIENT, MAX_SESSIONS
from pxelab.tftp.files import FileCache, FileSource
from pxelab.tftp.packet import Ack, Data, ErrorCode, ErrorPacket, OptionAck, ReadRequest
from pxelab.tftp.server import TftpServer, start_tftp
from pxelab.tftp.session import SessionConfig
from tests.integration.test_tftp_server import HOST, QUIET, RawClient, fetch

Address = tuple[str, int]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "small.bin").write_bytes(bytes(range(256)) * 5)  # 1280 bytes
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "sub" / "file.bin").write_bytes(b"inside\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "file.bin").write_bytes(b"outside secret\n")
    return root


async def open_client(host: str = HOST) -> RawClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_datagram_endpoint(RawClient, local_addr=(host, 0))
    return client


async def fetch_windowed(
    client: RawClient,
    port: int,
    name: str,
    blksize: int,
    windowsize: int,
    times: list[tuple[float, float]] | None = None,
) -> bytes:
    """Read a file as an RFC 7440 client: OACK, then ACK the last block of each window.
    With `times`, append (OACK received, last block received) on the monotonic clock."""
    options = {"blksize": str(blksize), "windowsize": str(windowsize)}
    client.send(ReadRequest(name, "octet", options), (HOST, port))
    packet, tid = await client.recv(timeout=10)
    started = time.monotonic()
    assert packet == OptionAck(options), packet
    client.send(Ack(0), tid)
    content, expected, in_window = bytearray(), 1, 0
    while True:
        packet, _ = await client.recv(timeout=10)
        assert isinstance(packet, Data), packet
        if packet.block != expected & 0xFFFF:
            continue
        content += packet.data
        expected += 1
        in_window += 1
        last = len(packet.data) < blksize
        if last or in_window == windowsize:
            client.send(Ack(packet.block), tid)
            in_window = 0
        if last:
            if times is not None:
                times.append((started, time.monotonic()))
            return bytes(content)


async def wait_for(predicate: object, seconds: float = 30.0) -> None:
    """Until predicate() holds (a positive signal); seconds of wall time only bound a hang."""
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"not within {seconds} s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def servers() -> AsyncIterator[list[TftpServer]]:
    started: list[TftpServer] = []
    yield started
    for server in started:
        server.close()
        await server.wait_closed()


# --- caps ---------------------------------------------------------------------------------


async def receive_rest(client: RawClient, first: Data, tid: Address) -> bytes:
    """ACK blocks lockstep from `first` (already received) to the end of the file."""
    content, packet = bytearray(first.data), first
    while True:
        client.send(Ack(packet.block), tid)
        if len(packet.data) < 512:
            return bytes(content)
        received, tid = await client.recv()
        assert isinstance(received, Data), received
        packet = received
        content += packet.data


async def test_per_client_cap_makes_extra_requests_wait_not_time_out(
    root: Path, servers: list[TftpServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Machines behind one address: the one over the cap is served as soon as a slot frees,
    without retransmitting its RRQ; other addresses are served meanwhile."""
    caplog.set_level(logging.INFO, "pxelab.tftp")
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=5), max_per_client=1)
    servers.append(tftp)
    first, second, other = await open_client(), await open_client(), await open_client("127.0.0.2")
    small = (root / "small.bin").read_bytes()
    try:
        first.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        packet, tid = await first.recv()
        assert isinstance(packet, Data)
        second.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        await wait_for(lambda: tftp.queued == 1)  # it waits: the first transfer holds the slot
        assert await second.nothing_for(QUIET)
        assert "waits, 1 transfers in flight for 127.0.0.1 (tftp_max_per_client)" in caplog.text
        assert await fetch(other, tftp.port, "small.bin") == small
        assert await receive_rest(first, packet, tid) == small
        # the slot is free: the waiting request is answered with no retransmission
        packet, tid = await second.recv()
        assert isinstance(packet, Data) and packet.block == 1
        assert await receive_rest(second, packet, tid) == small
        assert (tftp.queued, tftp.refused_busy, tftp.expired) == (1, 0, 0)
        await wait_for(lambda: tftp.sessions == 0)
    finally:
        for client in (first, second, other):
            client.close()


async def test_a_full_wait_queue_drops_requests(
    root: Path, servers: list[TftpServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    tftp = await start_tftp(
        root, HOST, 0, config=SessionConfig(timeout=5), max_per_client=1, max_queued=0
    )
    servers.append(tftp)
    first, second = await open_client(), await open_client()
    try:
        first.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        await first.recv()
        second.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        await wait_for(lambda: tftp.refused_busy == 1)  # judged and dropped ...
        assert await second.nothing_for(QUIET)  # ... without an answer: the client will retry
        reason = "dropped, 1 transfers in flight for 127.0.0.1 (tftp_max_per_client), 0 waiting"
        assert reason in caplog.text
        assert (tftp.refused_busy, tftp.queued) == (1, 0)
    finally:
        for client in (first, second):
            client.close()


async def test_global_cap_and_slots_come_back(root: Path, servers: list[TftpServer]) -> None:
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=5), max_sessions=2)
    servers.append(tftp)
    clients = [await open_client() for _ in range(3)]
    try:
        tids = []
        for client in clients[:2]:
            client.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
            tids.append((await client.recv())[1])
        assert tftp.sessions == 2
        clients[2].send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        await wait_for(lambda: tftp.queued == 1)  # it waits for a slot ...
        assert await clients[2].nothing_for(QUIET)  # ... and gets no answer meanwhile
        assert tftp.sessions == 2
        # The first client gives up with an ERROR: its slot goes to the waiting request.
        clients[0].send(ErrorPacket(ErrorCode.NOT_DEFINED, "bye"), tids[0])
        packet, tid = await clients[2].recv()
        assert isinstance(packet, Data)
        assert await receive_rest(clients[2], packet, tid) == (root / "small.bin").read_bytes()
        assert (tftp.queued, tftp.refused_busy) == (1, 0)
        # and with the waiting request gone, a new one is served at once
        clients[0].close()
        clients[0] = await open_client()
        assert await fetch(clients[0], tftp.port, "small.bin") == (root / "small.bin").read_bytes()
    finally:
        for client in clients:
            client.close()


async def test_closing_with_requests_waiting(root: Path, servers: list[TftpServer]) -> None:
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=5), max_sessions=1)
    clients = [await open_client() for _ in range(3)]
    try:
        for client in clients:
            client.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        await clients[0].recv()
        await wait_for(lambda: tftp.queued == 2)
        tftp.close()
        await asyncio.wait_for(tftp.wait_closed(), 30)
        assert tftp.sessions == 0 and tftp.transfers == 0
        # closed, and nothing answers the waiting requests (a window: no signal but silence)
        assert await clients[1].nothing_for(QUIET) and await clients[2].nothing_for(0.01)
    finally:
        for client in clients:
            client.close()


async def test_a_repeated_rrq_does_not_start_a_second_transfer(
    root: Path, servers: list[TftpServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "pxelab.tftp")
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=5))
    servers.append(tftp)
    client = await open_client()
    try:
        for _ in range(3):
            client.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        packet, tid = await client.recv()
        assert packet == Data(1, (root / "small.bin").read_bytes()[:512])
        await wait_for(lambda: caplog.text.count("repeated RRQ 'small.bin'; ignored") == 2)
        assert await client.nothing_for(QUIET)
        assert tftp.sessions == 1
        client.send(Ack(1), tid)
        assert (await client.recv())[0] == Data(2, (root / "small.bin").read_bytes()[512:1024])
    finally:
        client.close()


def test_caps_must_be_positive(root: Path) -> None:
    with pytest.raises(ValueError, match="caps"):
        asyncio.run(start_tftp(root, HOST, 0, max_per_client=0))


# --- reaping and backoff ------------------------------------------------------------------


async def test_a_client_repeating_old_acks_is_reaped(
    root: Path, servers: list[TftpServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pxelab.tftp")
    config = SessionConfig(timeout=0.05, retries=1000, backoff=1.0, idle_limit=0.4)
    tftp = await start_tftp(root, HOST, 0, config=config)
    servers.append(tftp)
    client = await open_client()
    try:
        client.send(ReadRequest("big.bin", "octet"), (HOST, tftp.port))
        _, tid = await client.recv()
        client.send(Ack(1), tid)
        for _ in range(20):  # keeps the socket busy with a stale ACK, never progressing
            client.send(Ack(1), tid)
            await asyncio.sleep(0.03)
        await wait_for(lambda: tftp.sessions == 0)
        assert "RRQ 'big.bin': reaped, idle with 512 of 300000 bytes acknowledged" in caplog.text
    finally:
        client.close()


async def test_retransmissions_back_off(root: Path, servers: list[TftpServer]) -> None:
    loop = asyncio.get_running_loop()
    config = SessionConfig(timeout=0.05, retries=3, backoff=2.0)
    tftp = await start_tftp(root, HOST, 0, config=config)
    servers.append(tftp)
    client = await open_client()
    try:
        client.send(ReadRequest("small.bin", "octet"), (HOST, tftp.port))
        times = []
        for _ in range(4):
            await client.recv()
            times.append(loop.time())
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.195, gaps
        await wait_for(lambda: tftp.sessions == 0)
    finally:
        client.close()


# --- files: cache, pread, changes, races --------------------------------------------------


async def test_hot_files_come_from_memory_and_changes_are_seen(
    root: Path, servers: list[TftpServer]
) -> None:
    tftp = await start_tftp(root, HOST, 0, cache=FileCache(max_file_bytes=4096))
    servers.append(tftp)
    client = await open_client()
    try:
        for _ in range(3):
            assert await fetch(client, tftp.port, "small.bin") == (root / "small.bin").read_bytes()
        assert (tftp.cache.hits, tftp.cache.misses) == (2, 1)
        (root / "small.bin").write_bytes(b"new content")
        assert await fetch(client, tftp.port, "small.bin") == b"new content"
        assert tftp.cache.misses == 2
    finally:
        client.close()


async def test_large_files_are_read_by_pread_and_closed(
    root: Path, servers: list[TftpServer]
) -> None:
    tftp = await start_tftp(root, HOST, 0, cache=FileCache(max_file_bytes=4096))
    servers.append(tftp)
    client = await open_client()
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        got = await fetch_windowed(client, tftp.port, "big.bin", 1428, 8)
        assert got == (root / "big.bin").read_bytes()
        await wait_for(lambda: tftp.sessions == 0)
        assert tftp.cache.bytes == 0
        assert len(os.listdir("/proc/self/fd")) == fds_before
    finally:
        client.close()


async def test_directory_swapped_for_a_symlink_while_opening_is_refused(
    root: Path, servers: list[TftpServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    def resolve_then_swap(real_root: Path, filename: str) -> Path:
        path = resolve(real_root, filename)
        # The race: after the check, `sub` becomes a symlink that leads out of the root.
        (root / "sub" / "file.bin").unlink()
        (root / "sub").rmdir()
        (root / "sub").symlink_to(root.parent / "outside")
        return path

    monkeypatch.setattr("pxelab.tftp.files.resolve", resolve_then_swap)
    tftp = await start_tftp(root, HOST, 0)
    servers.append(tftp)
    client = await open_client()
    try:
        client.send(ReadRequest("sub/file.bin", "octet"), (HOST, tftp.port))
        packet, _ = await client.recv()
        assert isinstance(packet, ErrorPacket)
        assert packet.code == ErrorCode.ACCESS_VIOLATION
        assert "outside the TFTP root" in packet.message
    finally:
        client.close()


# --- the timeline -------------------------------------------------------------------------


async def test_outcomes_go_to_the_timeline(root: Path, servers: list[TftpServer]) -> None:
    timeline = Timeline()
    timeline.bind(HOST, "52:54:00:00:00:01")
    tftp = await start_tftp(root, HOST, 0, timeline=timeline)
    servers.append(tftp)
    client = await open_client()
    try:
        await fetch(client, tftp.port, "small.bin")
        client.send(ReadRequest("autoexec.ipxe", "octet"), (HOST, tftp.port))
        await client.recv()
        client.send(ReadRequest("../x", "octet"), (HOST, tftp.port))
        await client.recv()
        await wait_for(lambda: len(timeline.events("52:54:00:00:00:01")) == 3)
        events = timeline.events("52:54:00:00:00:01")
        assert [e.stage for e in events] == ["tftp"] * 3
        assert [e.ip for e in events] == [HOST] * 3
        assert events[0].detail == "small.bin: sent 1280 bytes"
        assert events[1].detail == "autoexec.ipxe: error 1 (file not found)"
        assert events[2].detail.startswith("../x: refused, error 2 (access violation)")
    finally:
        client.close()


# --- robustness and load ------------------------------------------------------------------


async def test_random_datagrams_never_stop_the_server(
    root: Path, servers: list[TftpServer]
) -> None:
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=5))
    servers.append(tftp)
    rng = random.Random(4)
    client = await open_client()
    try:
        client.send(ReadRequest("big.bin", "octet"), (HOST, tftp.port))
        _, tid = await client.recv()
        for _ in range(2000):
            opcode = rng.choice([b"", b"\0\1", b"\0\2", b"\0\3", b"\0\4", b"\0\5", b"\0\6"])
            junk = opcode + rng.randbytes(rng.randrange(0, 40))
            client.send(junk, (HOST, tftp.port))
            if not junk.startswith((b"\0\4", b"\0\5")) or len(junk) < 4:
                client.send(junk, tid)  # a transfer ignores junk; ACKs/ERRORs would be real
        await asyncio.sleep(0.2)
        fresh = await open_client()
        try:
            assert await fetch(fresh, tftp.port, "small.bin") == (root / "small.bin").read_bytes()
        finally:
            fresh.close()
    finally:
        client.close()


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans that were open at the same moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    return max(itertools.accumulate(step for _, step in edges))


async def test_200_concurrent_transfers_complete(root: Path, servers: list[TftpServer]) -> None:
    """200 transfers at once under the shipped caps (512 in all, 16 per client IP): 13 client
    addresses, up to 16 transfers each, so every one is admitted at its first RRQ (the clients
    here never retry) and they really run side by side (their spans overlap)."""
    assert (
        Config().tftp_max_sessions,
        Config().tftp_max_per_client,
    ) == (MAX_SESSIONS, MAX_PER_CLIENT)
    tftp = await start_tftp(root, HOST, 0, config=SessionConfig(timeout=2))
    servers.append(tftp)
    addresses = [f"127.0.0.{10 + i // MAX_PER_CLIENT}" for i in range(200)]
    clients = [await open_client(address) for address in addresses]
    spans: list[tuple[float, float]] = []
    try:
        results = await asyncio.gather(
            *(
                fetch_windowed(client, tftp.port, "big.bin", 1428, 1 + i % 16, spans)
                for i, client in enumerate(clients)
            )
        )
        expected = (root / "big.bin").read_bytes()
        assert all(result == expected for result in results)
        assert tftp.refused_busy == 0
        # each transfer takes ~210 blocks; they overlap rather than run one after another
        assert len(spans) == 200 and most_at_once(spans) >= 150, most_at_once(spans)
        await wait_for(lambda: tftp.sessions == 0)
    finally:
        for client in clients:
            client.close()


# --- nothing read on the event loop -------------------------------------------------------


class _FileAccess:
    """Records opens (audit hook) and preads made on the event loop's thread while active."""

    installed = False
    current: _FileAccess | None = None

    def __init__(self, loop_thread: int, under: Path) -> None:
        self.loop_thread = loop_thread
        self.under = str(under)
        self.on_loop: list[str] = []
        self.off_loop = 0

    @classmethod
    def hook(cls, event: str, args: tuple[object, ...]) -> None:
        self = cls.current
        if self is None or event != "open" or not str(args[0]).startswith(self.under):
            return
        if threading.get_ident() == self.loop_thread:
            self.on_loop.append(f"open {args[0]}")
        else:
            self.off_loop += 1


async def test_no_file_is_opened_or_read_on_the_event_loop(
    root: Path, tmp_path: Path, servers: list[TftpServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small, big (pread a chunk at a time) and GRUB-generated files: all I/O in worker threads."""
    hosts, images = tmp_path / "hosts", tmp_path / "images"
    hosts.mkdir()
    (images / "demo" / "amd64").mkdir(parents=True)
    (images / "demo" / "amd64" / "vmlinuz").write_bytes(os.urandom(700_000))
    host = {"name": "vm", "mac": "52:54:00:00:00:07", "distro": "demo", "arch": "x86_64"}
    (hosts / "vm.json").write_text(json.dumps(host))
    installs = InstallStore()
    await installs.set(host["mac"], InstallState.INSTALL, 1.0, "test")
    grub = GrubFiles(Inventory(hosts), Renderer(), images, installs)
    # the test's own reads, before the recording starts
    small, big = (root / "small.bin").read_bytes(), (root / "big.bin").read_bytes()
    vmlinuz = (images / "demo" / "amd64" / "vmlinuz").read_bytes()

    access = _FileAccess(threading.get_ident(), tmp_path)
    if not _FileAccess.installed:
        sys.addaudithook(_FileAccess.hook)  # audit hooks cannot be removed: it checks `current`
        _FileAccess.installed = True
    real_pread = os.pread

    def pread(fd: int, length: int, offset: int) -> bytes:
        if threading.get_ident() == access.loop_thread:
            access.on_loop.append(f"pread {length} bytes at {offset}")
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", pread)
    monkeypatch.setattr(_FileAccess, "current", access)
    tftp = await start_tftp(
        root, HOST, 0, cache=FileCache(max_file_bytes=4096), virtual=grub, timeline=None
    )
    servers.append(tftp)
    client = await open_client()
    try:
        assert await fetch(client, tftp.port, "small.bin") == small
        assert await fetch_windowed(client, tftp.port, "big.bin", 1428, 16) == big
        kernel = await fetch_windowed(client, tftp.port, "/images/demo/amd64/vmlinuz", 1428, 4)
        assert kernel == vmlinuz
        config = await fetch(client, tftp.port, "grub/grub.cfg-01-52-54-00-00-00-07")
        assert b"linux /images/demo/amd64/vmlinuz" in config
        await wait_for(lambda: tftp.sessions == 0)
    finally:
        client.close()
    assert access.on_loop == []
    assert access.off_loop >= 3  # small.bin, big.bin, the kernel (install states are in memory)


async def test_a_failing_read_ends_the_transfer_with_an_error(
    root: Path, servers: list[TftpServer], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, "pxelab.tftp")
    real = FileSource.pread

    def pread(self: FileSource, offset: int, length: int) -> bytes:
        if offset > 0:
            raise OSError(errno.EIO, "Input/output error")
        return real(self, offset, length)

    monkeypatch.setattr(FileSource, "pread", pread)
    tftp = await start_tftp(root, HOST, 0, cache=FileCache(max_file_bytes=4096))
    servers.append(tftp)
    client = await open_client()
    try:
        with pytest.raises(AssertionError, match="Input/output error"):
            await fetch_windowed(client, tftp.port, "big.bin", 1428, 16)
        await wait_for(lambda: tftp.sessions == 0)
        assert "RRQ 'big.bin': stopped, cannot read the file: [Errno 5] Input/output error" in (
            caplog.text
        )
    finally:
        client.close()


async def test_closing_during_a_read_closes_the_file_once_the_read_returns(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = FileSource.pread
    reading, release = threading.Event(), threading.Event()

    def slow_pread(self: FileSource, offset: int, length: int) -> bytes:
        if offset > 0:
            reading.set()
            release.wait(5)
        return real(self, offset, length)

    monkeypatch.setattr(FileSource, "pread", slow_pread)
    client = await open_client()
    fds_before = sorted(os.listdir("/proc/self/fd"))
    tftp = await start_tftp(root, HOST, 0, cache=FileCache(max_file_bytes=4096))
    try:
        fetching = asyncio.ensure_future(fetch_windowed(client, tftp.port, "big.bin", 1428, 64))
        await wait_for(reading.is_set)
        tftp.close()
        closed = asyncio.ensure_future(tftp.wait_closed())
        await asyncio.sleep(0.1)
        assert not closed.done()  # the worker still reads from the descriptor: not closed yet
        release.set()
        await asyncio.wait_for(closed, 30)
        assert sorted(os.listdir("/proc/self/fd")) == fds_before
        fetching.cancel()
    finally:
        release.set()
        tftp.close()
        await tftp.wait_closed()
        client.close()

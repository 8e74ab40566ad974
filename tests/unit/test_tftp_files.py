"""Opening TFTP files: the cache of small files, and large files read a chunk ahead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxelab.paths import NotAFileError, PathRefused
from pxelab.tftp.files import READ_AHEAD, FileCache, FileSource, open_source
from pxelab.tftp.packet import Ack, Data, OptionAck, parse
from pxelab.tftp.session import MemorySource, ReadSession, Step


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "small.bin").write_bytes(b"small\n")
    (root / "big.bin").write_bytes(os.urandom(3 * READ_AHEAD + 123))
    (root / "dir").mkdir()
    (root / ".hidden").write_bytes(b"hidden")
    return Path(os.path.realpath(root))


def test_small_files_come_from_the_cache(root: Path) -> None:
    cache = FileCache(max_file_bytes=1024)
    first = open_source(root, "small.bin", False, cache)
    second = open_source(root, "/small.bin", False, cache)
    assert (first.cached, second.cached) == (False, True)
    assert isinstance(second.source, MemorySource) and second.source.data == b"small\n"
    assert (cache.hits, cache.misses, cache.bytes) == (1, 1, 6)
    netascii = open_source(root, "small.bin", True, cache)  # converted: never the cached bytes
    assert isinstance(netascii.source, MemorySource) and netascii.source.data == b"small\r\n"


def test_large_files_open_with_the_first_chunk_loaded(root: Path) -> None:
    opened = open_source(root, "big.bin", False, FileCache(max_file_bytes=1024))
    source = opened.source
    assert isinstance(source, FileSource)
    try:
        content = (root / "big.bin").read_bytes()
        assert source.size == len(content)
        assert source.wanted(0, READ_AHEAD) is None
        assert source.read(100, 50) == content[100:150]
        assert source.blocking_reads == 0
    finally:
        source.close()
    assert source.closed
    source.close()  # again: nothing happens


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("missing", FileNotFoundError),
        ("dir", NotAFileError),
        (".hidden", PathRefused),
        ("../root/small.bin", PathRefused),
    ],
)
def test_refusals(root: Path, name: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        open_source(root, name, False, FileCache())


def _file_source(path: Path) -> FileSource:
    return FileSource(os.open(path, os.O_RDONLY), path.stat().st_size)


def test_wanted_load_read(root: Path) -> None:
    path = root / "big.bin"
    content = path.read_bytes()
    source = _file_source(path)
    try:
        assert source.wanted(0, 0) is None  # nothing needed
        assert source.wanted(len(content), 512) is None  # the empty block after the end
        # a small span is read a whole READ_AHEAD chunk at a time
        assert source.wanted(1000, 4096) == (1000, READ_AHEAD)
        source.load(1000, READ_AHEAD, source.pread(1000, READ_AHEAD))
        assert source.wanted(1000, 4096) is None
        assert source.wanted(2000, READ_AHEAD - 1000) is None
        assert source.read(2000, 512) == content[2000:2512]
        # a span larger than the chunk is read whole; the last one stops at the end
        assert source.wanted(5000, 2 * READ_AHEAD) == (5000, 2 * READ_AHEAD)
        tail = len(content) - 100
        assert source.wanted(tail, 512) == (tail, 100)
        source.load(tail, 100, source.pread(tail, 100))
        assert source.read(tail, 512) == content[tail:]
        assert source.read(len(content), 512) == b""
        assert source.blocking_reads == 0
        # not loaded: still correct, but counted (the adapter never lets this happen)
        assert source.read(0, 10) == content[:10]
        assert source.blocking_reads == 1
    finally:
        source.close()


def test_a_file_that_shrinks_ends_early(root: Path) -> None:
    path = root / "big.bin"
    content = path.read_bytes()
    source = _file_source(path)
    try:
        os.truncate(path, 1000)
        offset, length = source.wanted(0, 4096) or (0, 0)
        source.load(offset, length, source.pread(offset, length))
        assert source.read(512, 512) == content[512:1000]
        assert source.read(1000, 512) == b""
        assert source.wanted(2000, 512) is None  # nothing more to read: the file ended
    finally:
        source.close()


def test_a_session_over_a_file_source_needs_only_loaded_bytes(root: Path) -> None:
    """Drive a windowed session as the adapter does: load `span()` before each event."""
    path = root / "big.bin"
    content = path.read_bytes()
    source = _file_source(path)
    session = ReadSession(source, {"blksize": "1428", "windowsize": "64"})
    received, loads = bytearray(), 0

    def ready() -> None:
        nonlocal loads
        wanted = source.wanted(*session.span())
        if wanted is not None:
            loads += 1
            source.load(*wanted, source.pread(*wanted))

    try:
        ready()
        step: Step = session.start(0.0)  # the OACK
        while session.outcome is None:
            ready()
            step = session.receive(_ack_for(step), 0.0)
            received += b"".join(d[4:] for d in step.send)
        assert bytes(received) == content
        assert source.blocking_reads == 0
        assert 4 <= loads <= 12  # a chunk (or two windows) at a time, not a read per block
    finally:
        source.close()


def _ack_for(step: Step) -> Ack:
    """The ACK an RFC 7440 client sends for the last datagram of a step (0 for an OACK)."""
    last = parse(step.send[-1])
    if isinstance(last, OptionAck):
        return Ack(0)
    assert isinstance(last, Data)
    return Ack(last.block)

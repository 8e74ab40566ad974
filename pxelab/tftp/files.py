"""Open files for TFTP transfers: confined to the root, hot files from memory, big ones by pread.

`open_source` runs in a worker thread. The sources it returns are read on the event loop from
memory only: a large file's next chunk is read by `FileSource.pread` in a worker thread first.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from pxelab.paths import NotAFileError, PathRefused, resolve
from pxelab.tftp.session import MemorySource, to_netascii

__all__ = [
    "READ_AHEAD",
    "FileCache",
    "FileSource",
    "NotAFileError",
    "Opened",
    "open_source",
]

_PROC_FD = Path("/proc/self/fd")
"""Where Linux shows the real path of an open descriptor."""


READ_AHEAD = 256 << 10
"""Bytes of a large file read per worker-thread call (more when a session's span is larger)."""


class FileSource:
    """A large file, read a chunk ahead by pread in a worker thread; `close()` frees the descriptor.

    Before each session event the adapter asks `wanted(*session.span())`; when that names a
    range, it runs `pread` on it in a worker thread and hands the bytes to `load` on the loop.
    `read` (the session's) then only slices memory.
    """

    def __init__(self, fd: int, size: int, first: bytes | None = None) -> None:
        self._fd = fd
        self._size = size
        self._offset = 0
        self._buffer = first or b""
        # `first` is what open_source read of the file's start: shorter, the file shrank.
        self._end = size if first is None or len(first) >= min(size, READ_AHEAD) else len(first)
        self.blocking_reads = 0
        """Reads `read` had to do itself because the bytes were not loaded (should stay 0)."""

    @property
    def size(self) -> int:
        """File size in bytes, as it was when the transfer started."""
        return self._size

    def wanted(self, offset: int, length: int) -> tuple[int, int] | None:
        """What to pread so that [offset, offset + length) is in memory; None when it already is."""
        end = min(offset + length, self._end)
        if end <= offset or (self._offset <= offset and end <= self._offset + len(self._buffer)):
            return None
        return offset, min(max(end - offset, READ_AHEAD), self._end - offset)

    def pread(self, offset: int, length: int) -> bytes:
        """Read `length` bytes from `offset` (blocking: call it in a worker thread)."""
        return _read_range(self._fd, offset, length)

    def load(self, offset: int, length: int, data: bytes) -> None:
        """Keep what `pread(offset, length)` returned; a short read means the file shrank."""
        self._offset, self._buffer = offset, data
        if len(data) < length:
            self._end = min(self._end, offset + len(data))

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`, from memory (fewer if the file shrank)."""
        end = min(offset + length, self._end)
        if end <= offset:
            return b""
        start = offset - self._offset
        if start < 0 or end > self._offset + len(self._buffer):
            self.blocking_reads += 1  # not loaded first: correct, but blocks the caller
            return self.pread(offset, end - offset)
        return self._buffer[start : end - self._offset]

    def close(self) -> None:
        """Close the descriptor; calling it again does nothing."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        """True once `close()` has run."""
        return self._fd < 0


@dataclass(frozen=True)
class Opened:
    """What the adapter gets for one RRQ: the source and whether it came from the cache."""

    source: MemorySource | FileSource
    """The file's bytes: in memory (small or hot files, netascii) or by pread (large files)."""
    cached: bool
    """True when the bytes came from the cache without reading the file."""


_Key = tuple[int, int, int, int, int]
"""(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns): a changed file gets a new key."""


class FileCache:
    """Whole small files in memory, least recently used first out, keyed by inode and mtime."""

    def __init__(self, max_bytes: int = 64 << 20, max_file_bytes: int = 8 << 20) -> None:
        self.max_bytes = max_bytes
        """Total bytes kept."""
        self.max_file_bytes = max_file_bytes
        """Files larger than this are never cached; they are read by pread."""
        self._entries: OrderedDict[_Key, MemorySource] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        """Requests served from memory."""
        self.misses = 0
        """Requests that read the file."""

    def get(self, key: _Key) -> MemorySource | None:
        with self._lock:
            source = self._entries.get(key)
            if source is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return source

    def put(self, key: _Key, source: MemorySource) -> None:
        if source.size > self.max_file_bytes or source.size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = source
            self._bytes += source.size
            while self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.size

    @property
    def bytes(self) -> int:
        """Bytes held now."""
        return self._bytes


def open_source(real_root: Path, filename: str, netascii: bool, cache: FileCache) -> Opened:
    """Resolve, open and check `filename` under the root; raise PathRefused or OSError."""
    path = resolve(real_root, filename)
    # O_NONBLOCK: opening a FIFO must not hang; O_NOFOLLOW: the resolved path has no symlink left.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotAFileError(errno.EACCES, "not a regular file")
        _check_confined(fd, real_root)
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if not netascii and info.st_size > cache.max_file_bytes:
            first = _read_range(fd, 0, min(info.st_size, READ_AHEAD))
            return Opened(FileSource(fd, info.st_size, first), cached=False)
        if not netascii and (hit := cache.get(key)) is not None:
            os.close(fd)
            return Opened(hit, cached=True)
        data = _read_range(fd, 0, info.st_size)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    if netascii:
        return Opened(MemorySource(to_netascii(data)), cached=False)
    source = MemorySource(data)
    cache.put(key, source)
    return Opened(source, cached=False)


def _check_confined(fd: int, real_root: Path) -> None:
    """Refuse a file opened outside the root: a directory swapped for a symlink after resolve()."""
    try:
        actual = Path(os.readlink(_PROC_FD / str(fd)))
    except OSError:
        return  # no /proc: resolve() alone confines (the race stays open)
    if not actual.is_relative_to(real_root):
        raise PathRefused("filename resolves outside the TFTP root (changed while opening)")


def _read_range(fd: int, offset: int, length: int) -> bytes:
    """`length` bytes from `offset`, or fewer if the file ends (or shrank) before."""
    chunks, done = [], 0
    while done < length:
        chunk = os.pread(fd, length - done, offset + done)
        if not chunk:
            break  # the file shrank while we read it
        chunks.append(chunk)
        done += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

"""The TFTP file cache's limits: its total size, eviction (least recently used first), the
per-file size, and a changed file read again (README: 8 MiB per file, 64 MiB in all)."""

from __future__ import annotations

import os
from pathlib import Path

from pxelab.tftp.files import FileCache, open_source
from pxelab.tftp.session import MemorySource


def _key(n: int) -> tuple[int, int, int, int, int]:
    return (1, n, 0, 0, 0)


def test_the_shipped_limits_are_the_documented_ones() -> None:
    cache = FileCache()
    assert (cache.max_file_bytes, cache.max_bytes) == (8 << 20, 64 << 20)


def test_the_total_never_exceeds_the_limit_and_the_least_recently_used_goes_first() -> None:
    cache = FileCache(max_bytes=1000, max_file_bytes=1000)
    for n in range(3):
        cache.put(_key(n), MemorySource(bytes(300)))
    assert cache.bytes == 900
    assert cache.get(_key(0)) is not None  # 0 is now the most recently used; 1 the least
    cache.put(_key(3), MemorySource(bytes(300)))  # 1200 > 1000: one must go
    assert cache.bytes == 900
    assert cache.get(_key(1)) is None
    assert all(cache.get(_key(n)) is not None for n in (0, 2, 3))
    cache.put(_key(4), MemorySource(bytes(1000)))  # exactly the limit: everything else goes
    assert cache.bytes == 1000
    assert [cache.get(_key(n)) is not None for n in range(5)] == [False] * 4 + [True]


def test_files_over_either_limit_are_never_kept_and_a_repeat_is_counted_once() -> None:
    cache = FileCache(max_bytes=1000, max_file_bytes=500)
    cache.put(_key(1), MemorySource(bytes(501)))  # over the per-file limit
    small = FileCache(max_bytes=100, max_file_bytes=500)
    small.put(_key(1), MemorySource(bytes(200)))  # over the total
    assert (cache.bytes, small.bytes) == (0, 0)
    assert cache.get(_key(1)) is None and small.get(_key(1)) is None
    cache.put(_key(2), MemorySource(bytes(400)))
    cache.put(_key(2), MemorySource(bytes(400)))
    assert cache.bytes == 400


def test_eviction_through_open_source_reads_the_file_again(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode() * 400)
    cache = FileCache(max_bytes=1000, max_file_bytes=1000)
    root = Path(os.path.realpath(tmp_path))
    assert [open_source(root, n, False, cache).cached for n in "abc"] == [False] * 3
    assert cache.bytes == 800  # a was evicted to make room for c
    assert [open_source(root, n, False, cache).cached for n in "cba"] == [True, True, False]
    assert (cache.hits, cache.misses, cache.bytes) == (2, 4, 800)


def test_a_changed_file_is_a_new_entry(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one")
    root, cache = Path(os.path.realpath(tmp_path)), FileCache()
    assert open_source(root, "f", False, cache).cached is False
    assert open_source(root, "f", False, cache).cached is True
    path.write_bytes(b"two!")
    os.utime(path, ns=(1, 1))  # another size and mtime: another key
    again = open_source(root, "f", False, cache)
    assert again.cached is False
    assert isinstance(again.source, MemorySource) and again.source.data == b"two!"

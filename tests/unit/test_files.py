"""Atomic writes: whole or untouched, no temporary file left behind, the mode `open` would give."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxelab.files import copy_atomic, write_atomic


def test_write_creates_and_replaces_with_no_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "new" / "host.json"
    write_atomic(path, "first\n")
    write_atomic(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["host.json"]


def test_mode_is_the_umask_default_or_the_one_asked(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "public", "x")
        write_atomic(tmp_path / "secret", "x", mode=0o600)
    finally:
        os.umask(old)
    assert (tmp_path / "public").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    write_atomic(path, "old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_copy_returns_the_size_and_leaves_no_temporary(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(70_000))
    dst = tmp_path / "tftp" / "ipxe.efi"
    assert copy_atomic(src, dst) == 70_000
    assert dst.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dst.parent.iterdir()) == ["ipxe.efi"]

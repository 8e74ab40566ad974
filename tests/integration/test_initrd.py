"""The test initrd read back by the real tools: its cpio archive by cpio, its scripts by busybox sh."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pxelab.testing.initrd import INIT, UDHCPC_SCRIPT, cpio_newc


def test_cpio_newc_is_read_back_by_cpio(tmp_path: Path) -> None:
    archive = cpio_newc(
        {
            "bin": (0o040755, b""),
            "bin/hello": (0o100755, b"#!/bin/sh\necho hi\n"),
            "odd": (0o100644, b"x" * 5),
        }
    )
    assert archive.startswith(b"070701")
    assert len(archive) % 4 == 0
    cpio = shutil.which("cpio")
    assert cpio is not None, "cpio is installed by scripts/setup.sh"
    subprocess.run([cpio, "-idm", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "bin" / "hello").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "bin" / "hello").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "odd").read_bytes() == b"xxxxx"


@pytest.mark.parametrize("script", [INIT, UDHCPC_SCRIPT], ids=["init", "udhcpc.script"])
def test_scripts_parse_with_busybox_sh(tmp_path: Path, script: str) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    path = tmp_path / "script"
    path.write_text(script)
    result = subprocess.run([busybox, "sh", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

"""The test initrd's shell scripts (init with its install step, the udhcpc hook) parse."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pxelab.testing.initrd import INIT, UDHCPC_SCRIPT


@pytest.mark.parametrize("script", [INIT, UDHCPC_SCRIPT], ids=["init", "udhcpc.script"])
def test_scripts_parse_with_busybox_sh(tmp_path: Path, script: str) -> None:
    busybox = shutil.which("busybox") or "/bin/busybox"
    path = tmp_path / "script"
    path.write_text(script)
    result = subprocess.run([busybox, "sh", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

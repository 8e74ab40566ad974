"""The test initrd's pure parts: cpio newc layout and module dependency order."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pxelab.testing.initrd import cpio_newc, module_order

MODULES_DEP = """\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
"""


def test_module_order_puts_dependencies_first_once() -> None:
    order = [
        Path(p).stem for p in module_order(MODULES_DEP, ["virtio_pci", "virtio_net", "absent"])
    ]
    assert order == [
        "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci",
        "failover", "net_failover", "virtio_net",
    ]  # fmt: skip


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

"""The test initrd's pure part: module dependency order (cpio and busybox read the rest back in
tests/integration/test_initrd.py)."""

from __future__ import annotations

from pathlib import Path

from pxelab.testing.initrd import module_order

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

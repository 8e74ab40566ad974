"""pytest fixtures to boot VMs from pxelab in your own tests: `pxelab_server` and `qemu_vm`.

Choose the network with a marker: `@pytest.mark.pxelab(network="user")` (the default; no root:
QEMU's user-mode network, HTTP boot via the NIC's iPXE) or `network="netns"` (root: a private
network namespace and bridge, where the VM's firmware does DHCP and TFTP with pxelab).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pxelab.testing import bootlab
from pxelab.testing.netns import Lab, lab
from pxelab.testing.qemu import (
    FIRMWARES,
    QemuVm,
    start_aarch64,
    start_x86,
    tap_netdev,
    user_netdev,
)

NETWORKS = ("user", "netns")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pxelab(network='user'|'netns'): how the pxelab_server and qemu_vm fixtures are networked",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    report = yield
    item.stash.setdefault(_FAILED, False)
    if report.failed:
        item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()


@dataclass
class PxelabServer:
    """A running `pxelab serve` with its own hosts, images (the test kernel+initrd) and iPXE."""

    network: str
    """`user` or `netns`."""
    dirs: bootlab.LabDirs
    """Its hosts, images, TFTP and state directories."""
    daemon: bootlab.Daemon
    """The daemon process and its log."""
    lab: Lab | None = None
    """The namespace lab, in `netns` mode."""
    token: str = ""
    """An API token (named `pytest`) for the writes: `Authorization: Bearer <token>`."""
    _next_ip: Iterator[int] = field(default_factory=lambda: iter(range(50, 100)))

    @property
    def log(self) -> str:
        return self.daemon.text()

    def add_host(self, name: str, mac: str, **fields: Any) -> dict[str, Any]:
        """Write a host file (distro `demo`, the test kernel+initrd, unless fields say otherwise)."""
        host: dict[str, Any] = {"name": name, "mac": mac, "arch": "x86_64", "distro": "demo"}
        if self.lab is not None:
            host["ip"] = self.lab.ip(next(self._next_ip))
        host.update(fields)
        bootlab.write_host(self.dirs, host)
        return host

    def add_profile(self, name: str, match: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """Write a profile (distro `demo` unless fields say otherwise) with these selectors."""
        profile: dict[str, Any] = {"distro": "demo", "match": match, **fields}
        bootlab.write_profile(self.dirs, name, profile)
        return profile


@pytest.fixture
def pxelab_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PxelabServer]:
    """pxelab serving from a fresh directory; stopped (and its namespace deleted) afterwards."""
    marker = request.node.get_closest_marker("pxelab")
    network = marker.kwargs.get("network", "user") if marker else "user"
    if network not in NETWORKS:
        raise ValueError(f"pytest.mark.pxelab: network must be one of {NETWORKS}, not {network!r}")
    dirs = bootlab.prepare(tmp_path_factory.mktemp("pxelab"), [])
    token = bootlab.create_token(dirs, "pytest")
    with contextlib.ExitStack() as stack:
        if network == "netns":
            the_lab = stack.enter_context(lab())
            daemon = bootlab.start_daemon(the_lab, dirs)
            server = PxelabServer(network, dirs, daemon, the_lab, token=token)
        else:
            server = PxelabServer(network, dirs, bootlab.start_daemon_usernet(dirs), token=token)
        try:
            yield server
        finally:
            code = server.daemon.stop()
            if request.node.stash.get(_FAILED, False) or code != 0:
                print(f"---- pxelab log (exit {code}) ----\n{server.log}")


@pytest.fixture
def qemu_vm(
    pxelab_server: PxelabServer, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., QemuVm]]:
    """A factory: `qemu_vm(mac, arch="x86_64"|"aarch64", firmware="uefi"|"bios"|"uefi-secure",
    disk=None)` boots a VM from pxelab_server (aarch64 and Secure Boot need network="netns");
    x86-64 VMs can have a directory as a read-only FAT disk, next in the boot order.

    Every VM is stopped afterwards.
    """
    vms: list[QemuVm] = []

    def start(
        mac: str, arch: str = "x86_64", firmware: str = "uefi", disk: Path | None = None
    ) -> QemuVm:
        workdir = tmp_path / f"vm{len(vms)}"
        the_lab = pxelab_server.lab
        if disk is not None and arch != "x86_64":
            raise ValueError("qemu_vm: a disk is for x86-64 VMs only")
        if arch == "aarch64" and firmware == "uefi":
            if the_lab is None:
                raise ValueError(
                    "qemu_vm: aarch64 boots through GRUB over TFTP: use network='netns'"
                )
            vm = start_aarch64(workdir, mac, tap_netdev(the_lab.add_tap()), ns=the_lab.server)
        elif arch != "x86_64" or firmware not in FIRMWARES:
            raise ValueError(f"qemu_vm: {arch}/{firmware} is not supported (x86_64: {FIRMWARES})")
        elif the_lab is not None:
            # UEFI: the firmware's own PXE client (romfile=); SeaBIOS has none: QEMU's iPXE ROM
            netdev = tap_netdev(the_lab.add_tap())
            vm = start_x86(workdir, mac, netdev, firmware=firmware, ns=the_lab.server,
                           nic_rom=firmware == "bios", disk=disk)  # fmt: skip
        elif firmware == "uefi-secure":
            raise ValueError(
                "qemu_vm: Secure Boot goes through shim and GRUB over TFTP: use network='netns'"
            )
        else:
            url = f"http://10.0.2.2:{pxelab_server.daemon.http_port}/boot.ipxe"
            vm = start_x86(
                workdir, mac, user_netdev(url), firmware=firmware, nic_rom=True, disk=disk
            )
        vms.append(vm)
        return vm

    yield start
    for vm in vms:
        vm.stop()
        if request.node.stash.get(_FAILED, False):
            print(f"---- serial log {vm.serial_log} ----\n{vm.text()}")

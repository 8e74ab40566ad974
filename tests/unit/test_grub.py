"""GRUB as a loader: which hosts get it from DHCP, and the configs pxelab's TFTP makes for it."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from pxelab.boot.grub import GrubFiles, host_config
from pxelab.boot.render import Renderer, RenderError
from pxelab.dhcp.arch import BootFiles, Firmware
from pxelab.dhcp.context import DhcpContext
from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode
from pxelab.dhcp.reply import choose_boot
from pxelab.errors import HostFileError
from pxelab.hosts.install import InstallState, InstallStore
from pxelab.hosts.inventory import Inventory, parse_host

MAC = "52:54:00:aa:64:01"


@pytest.mark.parametrize(
    ("files", "firmware", "loader", "expected"),
    [
        (BootFiles(), Firmware.UEFI_X64, None, "ipxe.efi"),
        (BootFiles(), Firmware.UEFI_X64, "ipxe", "ipxe.efi"),
        (BootFiles(), Firmware.UEFI_X64, "grub", "shimx64.efi"),
        (BootFiles(), Firmware.UEFI_ARM64, None, "ipxe-arm64.efi"),  # the operator supplied one
        (BootFiles(uefi_arm64=None), Firmware.UEFI_ARM64, None, "grubnetaa64.efi"),
        (BootFiles(uefi_arm64=None), Firmware.UEFI_ARM64, "ipxe", None),
        (BootFiles(), Firmware.UEFI_ARM64, "grub", "grubnetaa64.efi"),
        (BootFiles(), Firmware.BIOS, "grub", None),
        (BootFiles(), Firmware.BIOS, None, "undionly.kpxe"),
    ],
)
def test_boot_file_per_firmware_and_loader(
    files: BootFiles, firmware: Firmware, loader: str | None, expected: str | None
) -> None:
    assert files.for_firmware(firmware, loader) == expected


@dataclass(frozen=True)
class Machine:
    name: str = "m"
    ip: IPv4Address | None = None
    pxeboot: bool = True
    loader: str | None = None
    secure_boot: bool = False


def _discover(arch_code: int, *extra: tuple[int, bytes]) -> DhcpPacket:
    return DhcpPacket(
        op=Op.BOOTREQUEST,
        xid=1,
        chaddr=bytes.fromhex(MAC.replace(":", "")),
        options=(
            (OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,))),
            (93, struct.pack("!H", arch_code)),
            *extra,
        ),
    )


CTX = DhcpContext(
    server_ip=IPv4Address("10.0.0.1"),
    network=IPv4Network("10.0.0.0/24"),
    pool_start=IPv4Address("10.0.0.100"),
    pool_end=IPv4Address("10.0.0.199"),
    http_port=8080,
)


def test_secure_boot_hosts_get_shim_and_http_boot_keeps_ipxe() -> None:
    assert choose_boot(_discover(7), CTX, Machine(secure_boot=True)).file == "shimx64.efi"
    assert choose_boot(_discover(7), CTX, Machine(loader="grub")).file == "shimx64.efi"
    assert choose_boot(_discover(7), CTX, Machine()).file == "ipxe.efi"
    assert choose_boot(_discover(7), CTX, None).file == "ipxe.efi"
    http = choose_boot(_discover(16), CTX, Machine(loader="grub")).file
    assert http is not None and http.endswith("/tftp/ipxe.efi")  # GRUB has no HTTP-boot path here
    # an iPXE client is iPXE already, whatever the host's loader
    ipxe = choose_boot(_discover(7, (77, b"iPXE")), CTX, Machine(secure_boot=True)).file
    assert ipxe == "http://10.0.0.1:8080/boot.ipxe"


def test_host_file_loader_keys() -> None:
    host = parse_host({"mac": MAC, "arch": "aarch64", "loader": "grub"}, "h.json")
    assert (host.loader, host.secure_boot) == ("grub", False)
    assert parse_host({"mac": MAC, "secure_boot": True}, "h.json").secure_boot is True
    for bad, key in (({"loader": "pxelinux"}, "loader"), ({"secure_boot": "yes"}, "secure_boot"),
                     ({"secure_boot": True, "loader": "ipxe"}, "loader")):  # fmt: skip
        with pytest.raises(HostFileError, match=f"key '{key}'"):
            parse_host({"mac": MAC, **bad}, "h.json")


@pytest.fixture
def files(tmp_path: Path) -> GrubFiles:
    hosts, images = tmp_path / "hosts", tmp_path / "images"
    hosts.mkdir()
    (images / "demo" / "arm64").mkdir(parents=True)
    (images / "demo" / "arm64" / "vmlinuz").write_bytes(b"kernel")
    host = {
        "name": "arm",
        "mac": MAC.upper(),
        "arch": "aarch64",
        "distro": "demo",
        "kernel_args": "quiet t=1",
    }
    (hosts / "arm.json").write_text(json.dumps(host))
    off = {"name": "off", "mac": "52:54:00:aa:64:02", "distro": "demo", "pxeboot": False}
    (hosts / "off.json").write_text(json.dumps(off))
    return GrubFiles(Inventory(hosts), Renderer(), images)


async def test_generic_config_sends_grub_to_its_own(files: GrubFiles) -> None:
    generic = await files("/grub/grub.cfg", "10.0.0.64")
    assert isinstance(generic, bytes)
    assert b"configfile $prefix/grub.cfg-01-$net_default_mac" in generic


@pytest.mark.parametrize("spelling", [MAC, MAC.replace(":", "-"), MAC.upper().replace(":", "-")])
async def test_per_mac_config_boots_over_tftp(files: GrubFiles, spelling: str) -> None:
    config = await files(f"grub/grub.cfg-01-{spelling}", "10.0.0.64")
    assert isinstance(config, bytes)
    lines = config.decode().splitlines()
    assert "linux /images/demo/arm64/vmlinuz console=ttyAMA0 quiet t=1" in lines
    assert "initrd /images/demo/arm64/initrd" in lines
    assert lines[-1] == "boot"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("grub/grub.cfg-01-52-54-00-00-00-99", "no host with MAC 52:54:00:00:00:99"),
        ("grub/grub.cfg-01-52-54-00-aa-64-02", "pxeboot is off for off"),
    ],
)
async def test_unknown_and_pxeboot_off_go_to_the_next_device(
    files: GrubFiles, name: str, reason: str
) -> None:
    config = await files(name, "10.0.0.9")
    assert isinstance(config, bytes)
    lines = config.decode().splitlines()
    assert f"# pxelab: {reason}" in lines
    assert f'echo "pxelab: {reason}; booting the next device"' in lines
    assert lines[-1] == "exit"
    assert not any(line.startswith(("linux", "initrd")) for line in lines)


async def test_images_are_mounted_and_other_names_fall_through(
    files: GrubFiles, tmp_path: Path
) -> None:
    assert await files("/images/demo/arm64/vmlinuz", "10.0.0.64") == (
        (tmp_path / "images").resolve(),
        "demo/arm64/vmlinuz",
    )
    assert await files("grubnetaa64.efi", "10.0.0.64") is None
    assert await files("images/.incoming/x.iso", "10.0.0.64") is None  # unverified downloads
    assert await files("grub/grub.cfg-01-zz", "10.0.0.64") is None


def test_grub_cannot_boot_urls_or_expandable_args() -> None:
    url = parse_host({"mac": MAC, "distro": "d", "kernel": "http://x/vmlinuz"}, "u.json")
    with pytest.raises(RenderError, match="over TFTP"):
        host_config(Renderer(), url)
    dollar = parse_host({"mac": MAC, "distro": "d", "kernel_args": "a=$b"}, "d.json")
    with pytest.raises(RenderError, match="expands"):
        host_config(Renderer(), dollar)


async def test_installed_hosts_boot_their_disk(files: GrubFiles, tmp_path: Path) -> None:
    store = InstallStore()
    with_state = GrubFiles(files.inventory, files.renderer, tmp_path / "images", store)
    name = f"grub/grub.cfg-01-{MAC}"
    before = await with_state(name, "10.0.0.64")
    assert isinstance(before, bytes) and b"linux /images/" in before
    await store.set(MAC, InstallState.INSTALLED, 1.0, "test")
    config = await with_state(name, "10.0.0.64")
    assert (
        isinstance(config, bytes)
        and b"arm is installed" in config
        and config.rstrip().endswith(b"exit")
    )

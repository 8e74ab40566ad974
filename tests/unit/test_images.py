"""Where a host's image files are: pvmlab's arch spelling, then Debian's, then no arch directory;
the daemon's index answers from memory and is refreshed off the loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxelab.boot.grub import host_config
from pxelab.boot.images import ImageChoice, ImageIndex, decide, image_dirs
from pxelab.boot.render import Renderer
from pxelab.boot.rules import image_path
from pxelab.hosts.inventory import Host, parse_host

BASE = "http://10.0.0.1:8080"


def _host(arch: str = "x86_64", **extra: object) -> Host:
    data = {"name": "h", "mac": "52:54:00:00:00:01", "arch": arch, "distro": "d", **extra}
    return parse_host(data, "h.json")


def test_the_order_is_fixed() -> None:
    assert image_dirs("d", "x86_64") == ("d/x86_64/", "d/amd64/", "d/")
    assert image_dirs("d", "aarch64") == ("d/aarch64/", "d/arm64/", "d/")


@pytest.mark.parametrize(
    ("exists", "path", "found"),
    [
        ((True, True, True), "d/x86_64/vmlinuz", True),
        ((False, True, True), "d/amd64/vmlinuz", True),
        ((False, False, True), "d/vmlinuz", True),
        ((False, False, False), "d/amd64/vmlinuz", False),  # pxelab assets' layout, and 404
    ],
)
def test_decide_takes_the_first_that_exists(
    exists: tuple[bool, bool, bool], path: str, found: bool
) -> None:
    choice = decide(("d", "x86_64", "vmlinuz"), exists)
    assert choice == ImageChoice(path, found, ("d/x86_64/vmlinuz", "d/amd64/vmlinuz", "d/vmlinuz"))


@pytest.mark.parametrize("layout", ["x86_64", "amd64", ""])
def test_every_layout_reaches_ipxe_and_grub(tmp_path: Path, layout: str) -> None:
    where = tmp_path / "d" / layout if layout else tmp_path / "d"
    where.mkdir(parents=True)
    (where / "vmlinuz").write_bytes(b"k")
    (where / "initrd").write_bytes(b"i")
    host = _host()
    renderer = Renderer(None, ImageIndex(tmp_path, live=True))
    prefix = f"d/{layout}/" if layout else "d/"
    script = renderer.boot_script(host, BASE)
    assert f"kernel {BASE}/images/{prefix}vmlinuz initrd=initrd" in script
    assert f"initrd {BASE}/images/{prefix}initrd" in script
    grub = host_config(renderer, host)
    assert f"linux /images/{prefix}vmlinuz" in grub and f"initrd /images/{prefix}initrd" in grub


def test_the_daemon_index_answers_from_memory(tmp_path: Path) -> None:
    host = _host("aarch64")
    index = ImageIndex(tmp_path)
    first = index.find(host, "vmlinuz")
    assert first.found is None and first.path == "d/arm64/vmlinuz"  # not looked at yet
    (tmp_path / "d/aarch64").mkdir(parents=True)
    (tmp_path / "d/aarch64/vmlinuz").write_bytes(b"k")
    assert index.find(host, "vmlinuz").found is None  # no stat on lookups
    assert index.refresh([host]) is True
    assert index.find(host, "vmlinuz").path == "d/aarch64/vmlinuz"
    assert image_path(host, "initrd", index) == "d/arm64/initrd"
    assert index.find(host, "initrd").found is False
    assert index.refresh([host]) is False
    (tmp_path / "d/aarch64/vmlinuz").unlink()
    assert index.refresh([host]) is True
    assert index.find(host, "vmlinuz").found is False


def test_a_host_console_is_not_doubled() -> None:
    own = _host(kernel_args="console=ttyS1,115200 quiet")
    script = Renderer().boot_script(own, BASE)
    assert script.count("console=") == 1 and "console=ttyS1,115200 quiet" in script
    plain = Renderer().boot_script(_host(kernel_args="quiet"), BASE)
    assert "console=ttyS0 quiet" in plain

"""Boot scripts from templates: URLs, console per arch, kernel args, overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxelab.boot.render import Renderer, RenderError
from pxelab.hosts.inventory import parse_host

BASE = "http://10.0.0.1:8080"


def test_default_script_boots_kernel_and_initrd_from_images() -> None:
    host = parse_host(
        {"name": "vm1", "mac": "52:54:00:00:00:01", "distro": "demo", "kernel_args": "quiet a=1"},
        "vm1.json",
    )
    script = Renderer().boot_script(host, BASE)
    assert script.startswith("#!ipxe\n")
    lines = script.splitlines()
    installed = f"pxelab.installed_url={BASE}/api/hosts/52:54:00:00:00:01/installed"
    kernel = f"kernel {BASE}/images/demo/amd64/vmlinuz initrd=initrd console=ttyS0 quiet a=1"
    assert f"{kernel} {installed}" in lines
    assert f"initrd {BASE}/images/demo/amd64/initrd" in lines
    assert lines[-1] == "boot"


def test_arm64_console_and_absolute_urls() -> None:
    host = parse_host(
        {
            "mac": "52:54:00:00:00:02",
            "arch": "aarch64",
            "kernel": "http://mirror.example/linux",
            "initrd": "initrd.gz",
            "distro": "d",
        },
        "a.json",
    )
    script = Renderer().boot_script(host, BASE)
    assert "kernel http://mirror.example/linux initrd=initrd.gz console=ttyAMA0" in script
    assert f"initrd {BASE}/images/d/arm64/initrd.gz" in script


def test_no_html_escaping() -> None:
    host = parse_host(
        {"mac": "52:54:00:00:00:03", "distro": "d", "kernel_args": "x=<a&b> 'q' \"d\""}, "h.json"
    )
    assert "x=<a&b> 'q' \"d\"" in Renderer().boot_script(host, BASE)


def test_host_without_distro_is_a_render_error() -> None:
    host = parse_host({"name": "nod", "mac": "52:54:00:00:00:04"}, "nod.json")
    with pytest.raises(RenderError, match=r"nod\.json"):
        Renderer().boot_script(host, BASE)


def test_override_dir_wins_and_errors_are_whole(tmp_path: Path) -> None:
    (tmp_path / "boot.ipxe.j2").write_text("#!ipxe\necho custom {{ host.name }}\n")
    host = parse_host({"name": "c", "mac": "52:54:00:00:00:05", "distro": "d"}, "c.json")
    assert Renderer(tmp_path).boot_script(host, BASE) == "#!ipxe\necho custom c\n"
    (tmp_path / "boot.ipxe.j2").write_text("#!ipxe\necho {{ host.nope }}\n")
    with pytest.raises(RenderError, match=r"boot\.ipxe\.j2"):
        Renderer(tmp_path).boot_script(host, BASE)
    (tmp_path / "boot.ipxe.j2").write_text("#!ipxe\n{% if %}\n")
    with pytest.raises(RenderError, match="line 2"):
        Renderer(tmp_path).boot_script(host, BASE)


def test_chain_script_uses_the_mac_of_the_booting_nic() -> None:
    script = Renderer().chain_script(BASE)
    assert script == f"#!ipxe\nchain {BASE}/boot?mac=${{netX/mac}}\n"

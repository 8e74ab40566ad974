"""The boot-script cache: a hit renders nothing; each thing a script is made from invalidates it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pxelab.boot.render import Renderer
from pxelab.hosts.install import InstallState
from pxelab.hosts.inventory import Inventory, parse_host

BASE = "http://10.0.0.1:8080"
MAC = "52:54:00:00:00:01"
HOST = parse_host({"name": "vm1", "mac": MAC, "distro": "demo"}, "vm1.json")


class Counting(Renderer):
    """A renderer that counts the templates it really renders."""

    renders = 0

    def render(self, template: str, what: str, **context: object) -> str:
        self.renders += 1
        return super().render(template, what, **context)


def test_a_repeated_request_renders_once_and_returns_the_same_script() -> None:
    renderer = Counting()
    first = renderer.boot_script(HOST, BASE)
    assert renderer.boot_script(HOST, BASE) is first
    # an equal host definition read again from its file is the same host
    again = parse_host({"name": "vm1", "mac": MAC, "distro": "demo"}, "vm1.json")
    assert renderer.boot_script(again, BASE) is first
    assert renderer.renders == 1


def test_base_url_and_install_state_are_part_of_the_key() -> None:
    renderer = Counting()
    install = renderer.boot_script(HOST, BASE)
    other = renderer.boot_script(HOST, "http://lab.example:8080")
    installed = renderer.boot_script(HOST, BASE, InstallState.INSTALLED)
    assert "http://lab.example:8080/images/" in other and BASE not in other
    assert installed.splitlines()[-1] == "exit" and "kernel " in install
    assert renderer.boot_script(HOST, BASE) is install
    assert renderer.renders == 3


def test_a_new_install_generation_renders_a_newly_signed_callback() -> None:
    """`hosts reinstall` (here or in another process) bumps the generation the signer names."""
    renderer = Counting()
    generation = {MAC: 1}
    renderer.signer = lambda mac: f"{generation[mac]}.sig{generation[mac]}"
    first = renderer.boot_script(HOST, BASE)
    assert "/installed/1.sig1" in first
    generation[MAC] = 2
    second = renderer.boot_script(HOST, BASE)
    assert "/installed/2.sig2" in second and "1.sig1" not in second
    assert renderer.renders == 2


def test_a_changed_host_file_renders_again(tmp_path: Path) -> None:
    (tmp_path / "vm1.json").write_text(f'{{"name": "vm1", "mac": "{MAC}", "distro": "demo"}}')
    inventory = Inventory(tmp_path)
    renderer = Counting()
    host = inventory.lookup(MAC)
    assert host is not None
    assert "quiet" not in renderer.boot_script(host, BASE)
    path = tmp_path / "vm1.json"
    path.write_text(f'{{"name": "vm1", "mac": "{MAC}", "distro": "demo", "kernel_args": "quiet"}}')
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    inventory.refresh()
    changed = inventory.lookup(MAC)
    assert changed is not None and changed is not host
    assert " quiet" in renderer.boot_script(changed, BASE)
    assert renderer.renders == 2


def _bump(path: Path, text: str) -> None:
    """Rewrite a template with an mtime that surely differs (coarse file system clocks)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9,) * 2)


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "boot.ipxe.j2").write_text("#!ipxe\n{% include 'part.j2' %}\n")
    (directory / "part.j2").write_text("echo one {{ host.name }}\n")
    return directory


def test_an_override_template_changing_on_disk_renders_again(overrides: Path) -> None:
    renderer = Counting(overrides, check_interval=0)
    assert renderer.boot_script(HOST, BASE) == "#!ipxe\necho one vm1\n\n"
    _bump(overrides / "boot.ipxe.j2", "#!ipxe\necho two {{ host.name }}\n")
    assert renderer.boot_script(HOST, BASE) == "#!ipxe\necho two vm1\n"
    assert renderer.renders == 2


def test_an_included_template_changing_on_disk_renders_again(overrides: Path) -> None:
    renderer = Counting(overrides, check_interval=0)
    assert renderer.boot_script(HOST, BASE) == "#!ipxe\necho one vm1\n\n"
    _bump(overrides / "part.j2", "echo three {{ host.name }}\n")
    assert renderer.boot_script(HOST, BASE) == "#!ipxe\necho three vm1\n\n"


def test_a_new_override_shadowing_a_shipped_template_renders_again(tmp_path: Path) -> None:
    renderer = Counting(tmp_path, check_interval=0)
    installed = renderer.boot_script(HOST, BASE, InstallState.INSTALLED)
    assert installed.splitlines()[-1] == "exit"
    _bump(tmp_path / "boot-local.ipxe.j2", "#!ipxe\necho local {{ host.name }}\nexit 1\n")
    assert renderer.boot_script(HOST, BASE, InstallState.INSTALLED).endswith("exit 1\n")


def test_templates_are_looked_at_once_per_check_interval(overrides: Path) -> None:
    now = [100.0]
    renderer = Counting(overrides, check_interval=1.0, clock=lambda: now[0])
    first = renderer.boot_script(HOST, BASE)
    _bump(overrides / "part.j2", "echo four {{ host.name }}\n")
    now[0] += 0.5
    assert renderer.boot_script(HOST, BASE) is first  # not looked at yet
    now[0] += 0.6
    assert "echo four vm1" in renderer.boot_script(HOST, BASE)


def test_images_found_elsewhere_render_again(tmp_path: Path) -> None:
    """The daemon's image index finds the kernel under another layout: the script follows."""
    from pxelab.boot.images import ImageIndex

    images = ImageIndex(tmp_path)
    renderer = Counting(images=images)
    assert "/images/demo/amd64/vmlinuz" in renderer.boot_script(HOST, BASE)
    assert images.refresh([HOST]) is True  # the first look: answers known now, a new version
    assert "/images/demo/amd64/vmlinuz" in renderer.boot_script(HOST, BASE)
    assert images.refresh([HOST]) is False  # nothing changed: same version, from the cache
    assert "/images/demo/amd64/vmlinuz" in renderer.boot_script(HOST, BASE)
    assert renderer.renders == 2
    (tmp_path / "demo" / "x86_64").mkdir(parents=True)
    for name in ("vmlinuz", "initrd"):
        (tmp_path / "demo" / "x86_64" / name).write_bytes(b"x")
    assert images.refresh([HOST]) is True
    assert "/images/demo/x86_64/vmlinuz" in renderer.boot_script(HOST, BASE)
    assert renderer.renders == 3


def test_a_live_image_index_is_never_cached(tmp_path: Path) -> None:
    from pxelab.boot.images import ImageIndex

    renderer = Counting(images=ImageIndex(tmp_path, live=True))
    renderer.boot_script(HOST, BASE)
    renderer.boot_script(HOST, BASE)
    assert renderer.renders == 2

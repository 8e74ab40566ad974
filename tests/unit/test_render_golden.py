"""Golden texts: every boot template x architecture, the local-boot script and all install data.

The expected files live in tests/unit/golden/; after a deliberate template change, rewrite them
with `PXELAB_UPDATE_GOLDEN=1 pytest tests/unit/test_render_golden.py` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pxelab.boot.render import INSTALL_DATA_FOR, Renderer
from pxelab.hosts.install import InstallState
from pxelab.hosts.inventory import Host, parse_host
from tests.installer_checks import check_in_process

BASE = "http://10.0.0.1:8080"
GOLDEN = Path(__file__).parent / "golden"
DISTROS = {
    "generic": "demo",
    "ubuntu": "ubuntu-24.04",
    "fedora": "fedora-41",
    "debian": "debian-12",
}
KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG0 admin@lab", "ssh-rsa AAAAB3NzaC1yc2E= ops"]


def _host(template: str, arch: str) -> Host:
    return parse_host(
        {
            "name": "node-7",
            "mac": "52:54:00:12:34:07",
            "arch": arch,
            "distro": DISTROS[template],
            "ssh_keys": KEYS,
            "kernel_args": "quiet",
        },
        "node-7.json",
    )


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PXELAB_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, f"{name} differs from the golden text"


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("template", sorted(DISTROS))
def test_boot_script_golden(template: str, arch: str) -> None:
    host = _host(template, arch)
    assert host.template == template  # picked from the distro's name
    script = Renderer().boot_script(host, BASE)
    _check(f"boot-{template}-{arch}.ipxe", script)
    console = "console=ttyS0" if arch == "x86_64" else "console=ttyAMA0"
    image_arch = "amd64" if arch == "x86_64" else "arm64"
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert f" {console} quiet" in kernel_line
    assert kernel_line.startswith(f"kernel {BASE}/images/{DISTROS[template]}/{image_arch}/vmlinuz")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_local_boot_script_golden(arch: str) -> None:
    script = Renderer().boot_script(_host("ubuntu", arch), BASE, InstallState.INSTALLED)
    _check(f"boot-local-{arch}.ipxe", script)
    assert script.splitlines()[-1] == "exit"
    assert "kernel" not in script


@pytest.mark.parametrize(
    ("template", "name"),
    sorted({(t, n) for t in DISTROS for n in INSTALL_DATA_FOR[t]} | {("ubuntu", "network-config")}),
)
def test_install_data_golden(template: str, name: str) -> None:
    text = Renderer().install_data(_host(template, "x86_64"), BASE, name)
    _check(f"{name}-{template}", text)
    check_in_process(name, template, (GOLDEN / f"{name}-{template}").read_text())
    calls_back = "/api/hosts/52:54:00:12:34:07/installed" in text
    # the installers' own data calls back; plain cloud-config and the metadata do not
    assert calls_back == (
        name in ("kickstart", "preseed") or (name, template) == ("user-data", "ubuntu")
    )
    if name == "user-data":
        assert text.startswith("#cloud-config\n")


def test_cloud_init_data_is_valid_yaml_with_the_host_file_values() -> None:
    renderer, host = Renderer(), _host("ubuntu", "x86_64")
    meta = yaml.safe_load(renderer.install_data(host, BASE, "meta-data"))
    assert meta == {"instance-id": "node-7-525400123407", "local-hostname": "node-7"}
    auto = yaml.safe_load(renderer.install_data(host, BASE, "user-data"))["autoinstall"]
    assert auto["version"] == 1
    assert auto["identity"]["hostname"] == "node-7"
    assert auto["ssh"]["authorized-keys"] == KEYS
    assert auto["storage"]["layout"]["name"] == "lvm"
    assert auto["late-commands"] == [
        f"curl -fsS -X POST {BASE}/api/hosts/52:54:00:12:34:07/installed"
    ]
    net = yaml.safe_load(renderer.install_data(host, BASE, "network-config"))
    assert net["ethernets"]["boot"]["match"]["macaddress"] == "52:54:00:12:34:07"
    plain = yaml.safe_load(renderer.install_data(_host("generic", "x86_64"), BASE, "user-data"))
    assert plain["hostname"] == "node-7" and plain["users"][0]["ssh_authorized_keys"] == KEYS

"""explain: the DHCP answer per firmware (from the real policy), TFTP presence, script and data."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from pxelab.boot.explain import DhcpHandout, as_text, explain
from pxelab.boot.render import Renderer
from pxelab.dhcp.arch import BootFiles
from pxelab.hosts.install import UNRECORDED, HostState, InstallState
from pxelab.hosts.inventory import Host, parse_host

BASE = "http://10.0.0.1:8080"
SERVER = IPv4Address("10.0.0.1")


def _host(**fields: object) -> Host:
    data: dict[str, object] = {
        "name": "n1",
        "mac": "52:54:00:00:00:01",
        "distro": "ubuntu-24.04",
        "ip": "10.0.0.21",
    }
    data.update(fields)
    return parse_host(data, "n1.json")


def _answers(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["client"]: a for a in result["dhcp"]["answers"]}


def test_x86_host_per_firmware(tmp_path: Path) -> None:
    (tmp_path / "ipxe.efi").write_bytes(b"efi")
    result = explain(_host(), UNRECORDED, Renderer(), BASE, SERVER, 8080, tftp_root=tmp_path)
    answers = _answers(result)
    assert list(answers) == ["bios", "uefi-x64", "http-x64", "ipxe"]
    assert answers["uefi-x64"]["boot_file"] == "ipxe.efi"
    assert answers["uefi-x64"]["tftp"] == {"file": "ipxe.efi", "exists": True, "via": "tftp"}
    assert answers["bios"]["boot_file"] == "undionly.kpxe"
    assert answers["bios"]["tftp"] == {"file": "undionly.kpxe", "exists": False, "via": "tftp"}
    assert answers["ipxe"]["boot_file"] == "http://10.0.0.1:8080/boot.ipxe"
    assert answers["ipxe"]["tftp"] is None
    assert answers["http-x64"]["http_client"] is True
    assert str(answers["http-x64"]["boot_file"]).startswith("http://10.0.0.1:8080/")
    assert answers["http-x64"]["tftp"] == {"file": "ipxe.efi", "exists": True, "via": "http"}
    assert result["dhcp"]["address"] == "10.0.0.21"
    assert "autoinstall" in str(result["script"])
    assert result["install_data_used"] == ["meta-data", "user-data", "network-config"]
    assert result["errors"] == []
    text = as_text(result)
    assert "x86-64 UEFI PXE [uefi-x64]: ipxe.efi" in text
    assert "TFTP serves undionly.kpxe: MISSING in the TFTP root" in text
    assert "install data user-data (this host's installer reads it):" in text


def test_arm64_and_one_arch_and_custom_boot_files() -> None:
    host = _host(arch="aarch64")
    result = explain(host, UNRECORDED, Renderer(), BASE, SERVER, 8080)
    assert list(_answers(result)) == ["uefi-arm64", "http-arm64", "ipxe"]
    assert _answers(result)["uefi-arm64"]["tftp"] == {
        "file": "ipxe-arm64.efi",
        "exists": None,
        "via": "tftp",
    }
    files = BootFiles(bios=None)
    one = explain(
        _host(), UNRECORDED, Renderer(), BASE, SERVER, 8080, arch="bios", handout=DhcpHandout(files)
    )
    assert list(_answers(one)) == ["bios"]
    assert _answers(one)["bios"]["boot_file"] is None
    with pytest.raises(ValueError, match="unknown --arch 'sparc'"):
        explain(host, UNRECORDED, Renderer(), BASE, SERVER, 8080, arch="sparc")


def test_installed_host_gets_the_local_script_and_pxeboot_off_gets_no_file() -> None:
    state = HostState(InstallState.INSTALLED, 5.0, "10.0.0.21")
    result = explain(_host(), state, Renderer(), BASE, SERVER, 8080)
    assert str(result["script"]).splitlines()[-1] == "exit"
    assert result["state"] == {
        "state": "installed",
        "changed": 5.0,
        "by": "10.0.0.21",
        "generation": 0,
    }
    off = explain(_host(pxeboot=False), UNRECORDED, Renderer(), BASE, SERVER, 8080)
    assert {a["boot_file"] for a in _answers(off).values()} == {None}


def test_render_errors_are_listed_not_raised() -> None:
    host = parse_host({"name": "nod", "mac": "52:54:00:00:00:09"}, "nod.json")
    result = explain(host, UNRECORDED, Renderer(), BASE, SERVER, 8080)
    assert result["script"] is None
    assert any("nod.json" in e for e in result["errors"])
    assert "(cannot be rendered)" in as_text(result)


def test_ipv6_answers_when_ipv6_is_served() -> None:
    server6 = IPv6Address("2001:db8:77::1")
    host = _host(ip6="2001:db8:77::21")
    result = explain(host, UNRECORDED, Renderer(), BASE, SERVER, 8080, server_ip6=server6)
    answers = {a["client"]: a for a in result["dhcp6"]["answers"]}
    assert result["dhcp6"]["address"] == "2001:db8:77::21"
    assert answers["uefi-x64"]["boot_file_url"] == "tftp://[2001:db8:77::1]/ipxe.efi"
    assert answers["http-x64"]["boot_file_url"] == "http://[2001:db8:77::1]:8080/tftp/ipxe.efi"
    assert answers["ipxe"]["boot_file_url"] == "http://[2001:db8:77::1]:8080/boot.ipxe"
    text = as_text(result)
    assert "DHCPv6: address 2001:db8:77::21 (server 2001:db8:77::1)" in text
    assert "[uefi-x64]: tftp://[2001:db8:77::1]/ipxe.efi" in text
    assert "dhcp6" not in explain(host, UNRECORDED, Renderer(), BASE, SERVER, 8080)

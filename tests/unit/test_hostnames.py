"""A host's `name` stays pxelab's identifier; installers get an RFC 1123 host name made from it."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pxelab.boot.explain import as_text, explain
from pxelab.boot.render import Renderer
from pxelab.hosts.fleet import Fleet
from pxelab.hosts.install import UNRECORDED
from pxelab.hosts.inventory import Inventory, parse_host
from pxelab.hosts.names import hostname_for
from tests.installer_checks import hostname_errors, hostnames

BASE = "http://10.0.0.1:8080"


@pytest.mark.parametrize(
    ("name", "hostname"),
    [
        ("worker-1", "worker-1"),
        ("db-01.lab", "db-01.lab"),
        ("42", "42"),
        ("Worker_1", "worker-1"),
        ("WEB01", "web01"),
        ("rack-2.row_b", "rack-2.row-b"),
        ("Rack_7.Node-A1_", "rack-7.node-a1"),
        ("node_", "node"),
        ("a.-b-.c", "a.b.c"),
        ("a..b.", "a.b"),
        ("x" * 63, "x" * 63),
        ("Lab_VMs-525400ab0007", "lab-vms-525400ab0007"),
    ],
)
def test_hostname_for(name: str, hostname: str) -> None:
    assert hostname_for(name) == hostname
    assert hostname_errors(hostname) == []


def test_long_labels_are_cut_to_63() -> None:
    assert hostname_for("a" * 70) == "a" * 63
    assert hostname_for(f"{'b' * 62}_{'c' * 10}") == "b" * 62


@pytest.mark.parametrize(
    ("hostname", "who"),
    [
        ("rack_7", "Anaconda"),
        ("Rack7", "subiquity"),
        ("rack7-", "netcfg"),
        ("-rack7", "Anaconda"),
        ("rack7.", "'.'"),
        ("a" * 64, "netcfg"),
        ("a" * 65, "Anaconda"),
        ("", "netcfg"),
    ],
)
def test_the_installers_rules_refuse_what_they_refuse(hostname: str, who: str) -> None:
    assert any(who in error for error in hostname_errors(hostname)), hostname


NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", fullmatch=True)
"""Every `name` a host file may have (pxelab.hosts.inventory's rule)."""


@given(NAMES)
def test_every_host_name_gives_a_host_name_every_installer_takes(name: str) -> None:
    hostname = hostname_for(name)
    assert hostname_errors(hostname) == [], (name, hostname)
    assert hostname_for(hostname) == hostname  # a valid host name stays as it is


def test_the_name_keys_the_urls_and_the_install_data_carries_the_hostname() -> None:
    renderer = Renderer()
    name = "Web_Server.LAB"
    rendered = {}
    for template, distro in (
        ("ubuntu", "ubuntu-24.04"),
        ("fedora", "fedora-41"),
        ("debian", "debian-12"),
    ):
        host = parse_host({"name": name, "mac": "52:54:00:ab:cd:02", "distro": distro}, "h.json")
        assert host.name == name and host.hostname == "web-server.lab"
        assert renderer.urls(host, BASE).seed == f"{BASE}/cloud-init/{name}/"
        for data in ("meta-data", "user-data", "kickstart", "preseed"):
            rendered[template, data] = renderer.install_data(host, BASE, data)
        script = renderer.boot_script(host, BASE)
        if template == "debian":
            assert " netcfg/get_hostname=web-server.lab " in script
    for (template, data), text in rendered.items():
        assert set(hostnames(data, text)) <= {"web-server.lab"}, (template, data, text)
    auto = yaml.safe_load(rendered["ubuntu", "user-data"])["autoinstall"]
    assert auto["identity"]["hostname"] == "web-server.lab"
    assert "--hostname=web-server.lab " in rendered["fedora", "kickstart"]
    assert "d-i netcfg/get_hostname string web-server.lab\n" in rendered["debian", "preseed"]
    meta = yaml.safe_load(rendered["ubuntu", "meta-data"])
    assert meta["local-hostname"] == "web-server.lab"


def test_a_host_file_with_such_a_name_still_serves_and_a_profile_name_too(tmp_path: Path) -> None:
    hosts, profiles = tmp_path / "hosts", tmp_path / "profiles"
    hosts.mkdir()
    profiles.mkdir()
    (hosts / "Worker_1.json").write_text(json.dumps({"mac": "52:54:00:ab:cd:03"}))
    (profiles / "p.json").write_text(json.dumps({"name": "Lab_VMs", "match": {}}))
    inventory = Inventory(hosts)
    (host,) = inventory.hosts()
    assert (host.name, host.hostname, inventory.errors) == ("Worker_1", "worker-1", {})
    served = Fleet(hosts, profiles).lookup("52:54:00:00:00:07")
    assert served is not None and served.name == "Lab_VMs-525400000007"
    assert served.hostname == "lab-vms-525400000007"


def test_explain_shows_the_host_name_when_it_differs_from_the_name() -> None:
    def explained(name: str) -> tuple[dict[str, Any], str]:
        host = parse_host({"name": name, "mac": "52:54:00:ab:cd:04", "distro": "debian-12"}, "h")
        result = explain(host, UNRECORDED, Renderer(), BASE, IPv4Address("10.0.0.1"), 8080)
        return result["host"], as_text(result)

    shown, text = explained("Node_4")
    assert (shown["name"], shown["hostname"]) == ("Node_4", "node-4")
    assert "installs as host name node-4 (made valid from its name)" in text
    shown, text = explained("node-4")
    assert shown["hostname"] == "node-4" and "installs as host name" not in text

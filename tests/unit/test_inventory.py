"""Host files: parsing, pvmlab compatibility, MAC spelling, live reload, broken files."""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from pxelab.errors import HostFileError
from pxelab.hosts.inventory import Inventory, normalize_mac, parse_host

PVMLAB_VM = {
    "name": "worker-1",
    "role": "worker",
    "arch": "aarch64",
    "ip": "192.168.254.10/24",
    "subnet": "192.168.254.0/24",
    "mac": "52:54:00:AB:CD:EF",
    "pxeboot": True,
    "distro": "ubuntu-24.04",
    "ssh_key": "ssh-ed25519 AAAA test",
    "kernel": "vmlinuz",
    "initrd": "initrd",
}


@pytest.mark.parametrize(
    "spelling",
    [
        "52:54:00:AB:CD:EF",
        "52-54-00-ab-cd-ef",
        "5254.00ab.cdef",
        "525400abcdef",
        " 52:54:00:ab:cd:ef ",
    ],
)
def test_mac_spellings_normalise(spelling: str) -> None:
    assert normalize_mac(spelling) == "52:54:00:ab:cd:ef"


@pytest.mark.parametrize("bad", ["", "52:54:00:ab:cd", "zz:54:00:ab:cd:ef", "52:54:00:ab:cd:ef:01"])
def test_bad_macs_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a MAC"):
        normalize_mac(bad)


def test_pvmlab_vm_json_is_read_unchanged() -> None:
    host = parse_host(PVMLAB_VM, "worker-1.json")
    assert host.name == "worker-1"
    assert host.mac == "52:54:00:ab:cd:ef"
    assert host.arch == "aarch64" and host.image_arch == "arm64"
    assert host.ip == IPv4Address("192.168.254.10")
    assert host.distro == "ubuntu-24.04"
    assert host.pxeboot is True
    assert host.ssh_key == "ssh-ed25519 AAAA test"
    assert host.extra == {"role": "worker", "subnet": "192.168.254.0/24"}


def test_defaults() -> None:
    host = parse_host({"mac": "52:54:00:00:00:01"}, "/hosts/lab-a.json")
    assert (host.name, host.arch, host.kernel, host.initrd, host.kernel_args) == (
        "lab-a",
        "x86_64",
        "vmlinuz",
        "initrd",
        "",
    )
    assert host.ip is None and host.pxeboot is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object"),
        ({"name": "x"}, "key 'mac' is missing"),
        ({"mac": "nope"}, "key 'mac'"),
        ({"mac": "52:54:00:00:00:01", "arch": "mips"}, "key 'arch'"),
        ({"mac": "52:54:00:00:00:01", "ip": "10.0.0.300"}, "key 'ip'"),
        ({"mac": "52:54:00:00:00:01", "pxeboot": "yes"}, "key 'pxeboot'"),
        ({"mac": "52:54:00:00:00:01", "kernel_args": "a\nb"}, "key 'kernel_args'"),
        ({"mac": "52:54:00:00:00:01", "kernel": "my kernel"}, "key 'kernel'"),
        ({"mac": "52:54:00:00:00:01", "name": 5}, "key 'name'"),
    ],
)
def test_bad_host_data_names_file_and_key(data: object, message: str) -> None:
    with pytest.raises(HostFileError, match=r"h\.json") as info:
        parse_host(data, "h.json")
    assert message in str(info.value)


def test_kernel_args_may_be_a_list() -> None:
    host = parse_host({"mac": "52:54:00:00:00:01", "kernel_args": ["a=1", "b"]}, "h.json")
    assert host.kernel_args == "a=1 b"


def _write(path: Path, data: object, bump: int = 0) -> None:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))


def test_directory_lookup_reload_and_broken_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "a.json", {"name": "a", "mac": "52:54:00:00:00:0A", "ip": "10.0.0.10"})
    _write(tmp_path / "broken.json", "{not json")
    _write(tmp_path / "notes.txt", "ignored")
    inv = Inventory(tmp_path)
    assert inv.lookup("52-54-00-00-00-0a") is not None
    assert inv.lookup("garbage") is None
    assert inv.reserved() == {IPv4Address("10.0.0.10"): "52:54:00:00:00:0a"}
    assert "broken.json" in caplog.text and "invalid JSON" in caplog.text
    assert list(inv.errors) == [str(tmp_path / "broken.json")]

    # a change on disk is picked up without a restart
    _write(
        tmp_path / "a.json", {"name": "a", "mac": "52:54:00:00:00:0A", "kernel_args": "x=1"}, 10**9
    )
    _write(tmp_path / "b.json", {"name": "b", "mac": "52:54:00:00:00:0B"})
    _write(tmp_path / "broken.json", {"name": "fixed", "mac": "52:54:00:00:00:0C"}, 10**9)
    assert inv.refresh() is True
    host_a = inv.lookup("52:54:00:00:00:0a")
    assert host_a is not None and host_a.kernel_args == "x=1"
    assert [h.name for h in inv.hosts()] == ["a", "b", "fixed"]
    assert inv.errors == {}

    (tmp_path / "b.json").unlink()
    assert inv.refresh() is True
    assert inv.lookup("52:54:00:00:00:0b") is None
    assert inv.refresh() is False  # nothing changed since


def test_clashing_hosts_keep_the_first_file(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", {"name": "a", "mac": "52:54:00:00:00:01"})
    _write(tmp_path / "b.json", {"name": "b", "mac": "52:54:00:00:00:01"})
    inv = Inventory(tmp_path)
    host = inv.lookup("52:54:00:00:00:01")
    assert host is not None and host.name == "a"
    assert "is already served by" in inv.errors[str(tmp_path / "b.json")]


@pytest.mark.parametrize(
    "newcomer",
    [
        {"name": "typo", "mac": "52:54:00:00:00:01"},
        {"name": "web", "mac": "52:54:00:00:00:99"},
        {"name": "other", "mac": "52:54:00:00:00:98", "ip": "10.0.0.5"},
    ],
    ids=["same-mac", "same-name", "same-ip"],
)
def test_a_new_file_never_takes_a_serving_host_down(
    tmp_path: Path, newcomer: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path / "z-web.json", {"name": "web", "mac": "52:54:00:00:00:01", "ip": "10.0.0.5"})
    inv = Inventory(tmp_path)
    serving = inv.lookup("52:54:00:00:00:01")
    assert serving is not None
    _write(tmp_path / "a-new.json", newcomer)  # sorts first: it used to win
    assert inv.refresh() is True
    assert inv.lookup("52:54:00:00:00:01") is serving
    assert inv.by_name("web") is serving
    assert inv.reserved() == {serving.ip: serving.mac}
    error = inv.errors[str(tmp_path / "a-new.json")]
    assert f"already served by {tmp_path / 'z-web.json'}, which keeps serving" in error
    assert f"host file rejected: {error}" in caplog.text
    if newcomer["name"] == "other":
        assert inv.lookup("52:54:00:00:00:98") is None
    (tmp_path / "z-web.json").unlink()  # once the serving host goes, the newcomer serves
    assert inv.refresh() is True
    assert inv.errors == {}
    assert inv.by_name(newcomer["name"]) is not None


def test_on_change_sees_the_new_hosts_before_lookups_do(tmp_path: Path) -> None:
    seen: list[tuple[list[str], object]] = []
    inv = Inventory(tmp_path, rescan_on_lookup=False)
    inv.on_change = lambda hosts: seen.append(
        (sorted(h.name for h in hosts), inv.lookup("52:54:00:00:00:07"))
    )
    _write(tmp_path / "n.json", {"name": "n", "mac": "52:54:00:00:00:07"})
    assert inv.refresh() is True
    assert seen == [(["n"], None)]  # called first; then the host is published
    assert inv.lookup("52:54:00:00:00:07") is not None


def test_missing_directory_is_empty_not_fatal(tmp_path: Path) -> None:
    inv = Inventory(tmp_path / "nope")
    assert inv.hosts() == []


def test_ip6_reservation_key() -> None:
    host = parse_host(
        {"name": "v6", "mac": "52:54:00:00:00:06", "ip6": "2001:db8::6/64"}, "v6.json"
    )
    assert host.ip6 == IPv6Address("2001:db8::6") and "ip6" not in host.extra
    with pytest.raises(HostFileError, match=r"v6\.json: key 'ip6'"):
        parse_host({"name": "v6", "mac": "52:54:00:00:00:06", "ip6": "10.0.0.1"}, "v6.json")

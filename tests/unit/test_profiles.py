"""Profiles and selectors: inheritance, machines served from a profile, specificity, ties,
live reload, broken files, and where each value came from."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from pxelab.dhcp.packet import DhcpPacket, MessageType, Op, OptionCode
from pxelab.dhcp.traits import client_traits
from pxelab.errors import HostFileError
from pxelab.hosts.fleet import Fleet
from pxelab.hosts.profiles import Selector, parse_profile, parse_selector


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def bump(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    hosts, profiles = tmp_path / "hosts", tmp_path / "profiles"
    hosts.mkdir()
    profiles.mkdir()
    return hosts, profiles


@pytest.mark.parametrize("spelling", ["52:54:00", "52-54-00", "5254.00", "525400", "52:54:0"])
def test_mac_prefix_takes_any_length_and_separator(spelling: str) -> None:
    sel = parse_selector({"mac_prefix": spelling}, "p.json")
    assert sel.matches("52:54:00:12:34:56", None, None, {})
    assert not sel.matches("52:55:00:12:34:56", None, None, {})


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ({"mac_prefix": "zz"}, "p.json: key 'match.mac_prefix': 'zz' is not a MAC prefix"),
        ({"arch": "mips"}, "p.json: key 'match.arch': 'mips' is not x86_64 or aarch64"),
        ({"firmware": "efi"}, "p.json: key 'match.firmware': 'efi' is not one of bios, uefi"),
        ({"labels": {"rack": 3}}, "p.json: key 'match.labels' must be an object of strings"),
        ({"serial": "x"}, "p.json: key 'match.serial' is not a selector"),
    ],
)
def test_bad_selectors_name_the_key(match: dict[str, Any], message: str) -> None:
    with pytest.raises(HostFileError, match="^" + message.replace(".", r"\.")):
        parse_selector(match, "p.json")


def test_profile_keys_are_checked_like_a_host_file() -> None:
    with pytest.raises(HostFileError, match="key 'kernel_args' must not contain"):
        parse_profile({"kernel_args": "a ${x}"}, "/p/web.json")
    with pytest.raises(HostFileError, match="key 'ip' belongs in host files"):
        parse_profile({"ip": "10.0.0.5"}, "/p/web.json")
    profile = parse_profile({"distro": "debian-12", "match": {"arch": "amd64"}}, "/p/web.json")
    assert profile.name == "web" and profile.match == Selector(arch="x86_64")


def test_specificity_counts_selectors_then_prefix_length() -> None:
    assert (
        Selector(arch="x86_64", firmware="uefi").specificity > Selector(mac_prefix="52").specificity
    )
    assert Selector(mac_prefix="5254").specificity > Selector(mac_prefix="52").specificity
    assert Selector(labels={"a": "1", "b": "2"}).specificity > Selector(arch="x86_64").specificity


def test_host_inherits_from_its_profile_and_its_own_keys_win(dirs: tuple[Path, Path]) -> None:
    hosts, profiles = dirs
    write(
        profiles / "web.json",
        {"distro": "debian-12", "kernel_args": "console=ttyS0", "template": "debian"},
    )
    write(hosts / "w1.json", {"mac": "aa:00:00:00:00:01", "profile": "web", "kernel_args": "quiet"})
    fleet = Fleet(hosts, profiles)
    host = fleet.lookup("aa:00:00:00:00:01")
    assert host is not None
    assert (host.distro, host.kernel_args, host.template) == ("debian-12", "quiet", "debian")
    origins = fleet.origins(host)
    assert origins["distro"] == f"profile web ({profiles / 'web.json'})"
    assert origins["kernel_args"] == f"host file {hosts / 'w1.json'}"
    assert origins["kernel"] == "default"


def test_a_host_naming_a_missing_profile_is_skipped(dirs: tuple[Path, Path]) -> None:
    hosts, profiles = dirs
    write(hosts / "w1.json", {"mac": "aa:00:00:00:00:01", "profile": "nope"})
    fleet = Fleet(hosts, profiles)
    assert fleet.lookup("aa:00:00:00:00:01") is None
    assert "key 'profile': no profile 'nope'" in fleet.errors[str(hosts / "w1.json")]


def test_unknown_mac_is_served_from_the_matching_profile(dirs: tuple[Path, Path]) -> None:
    hosts, profiles = dirs
    write(profiles / "lab.json", {"distro": "demo", "match": {"mac_prefix": "52:54:00:ab"}})
    fleet = Fleet(hosts, profiles)
    host = fleet.lookup("52-54-00-AB-00-07")
    assert host is not None and host.name == "lab-525400ab0007" and host.distro == "demo"
    assert fleet.by_name("lab-525400ab0007") is host
    assert fleet.origins(host)["name"] == "generated from profile lab"
    assert fleet.lookup("52:54:00:ac:00:07") is None


def test_firmware_and_arch_come_from_what_dhcp_saw(dirs: tuple[Path, Path]) -> None:
    hosts, profiles = dirs
    write(profiles / "arm.json", {"distro": "demo", "match": {"arch": "arm64", "firmware": "uefi"}})
    write(profiles / "bios.json", {"distro": "old", "match": {"firmware": "bios"}})
    fleet = Fleet(hosts, profiles)
    assert fleet.lookup("02:00:00:00:00:01") is None  # nothing seen yet: no arch, no firmware
    fleet.observe("02:00:00:00:00:01", "aarch64", "uefi", "", 1.0)
    arm = fleet.lookup("02:00:00:00:00:01")
    assert arm is not None and arm.name == "arm-020000000001" and arm.arch == "aarch64"
    fleet.observe("02:00:00:00:00:02", "x86_64", "bios", "", 1.0)
    fleet.observe("02:00:00:00:00:02", "x86_64", None, "10.0.0.9", 2.0)  # iPXE's round
    old = fleet.lookup("02:00:00:00:00:02")
    assert old is not None and old.distro == "old"
    seen = fleet.sightings.get("02:00:00:00:00:02")
    assert seen is not None and (seen.firmware, seen.address, seen.first) == ("bios", "10.0.0.9", 1)


def test_most_specific_wins_and_ties_are_reported(dirs: tuple[Path, Path]) -> None:
    hosts, profiles = dirs
    write(profiles / "a-any.json", {"distro": "any", "match": {}})
    write(profiles / "b-x86.json", {"distro": "x86", "match": {"arch": "x86_64"}})
    write(
        profiles / "c-lab.json",
        {"distro": "lab", "match": {"arch": "x86_64", "mac_prefix": "5254"}},
    )
    write(
        profiles / "d-tie.json",
        {"distro": "tie", "match": {"firmware": "uefi", "mac_prefix": "5254"}},
    )
    fleet = Fleet(hosts, profiles)
    fleet.observe("52:54:00:00:00:01", "x86_64", "uefi", "", 1.0)
    fleet.observe("62:54:00:00:00:01", "x86_64", "uefi", "", 1.0)
    fleet.observe("72:54:00:00:00:01", "aarch64", "uefi", "", 1.0)
    assert getattr(fleet.lookup("52:54:00:00:00:01"), "distro", None) == "lab"
    assert getattr(fleet.lookup("62:54:00:00:00:01"), "distro", None) == "x86"
    assert getattr(fleet.lookup("72:54:00:00:00:01"), "distro", None) == "any"
    error = fleet.profile_set.errors[str(profiles / "d-tie.json")]
    assert "selectors tie with profile c-lab" in error and error.endswith("skipped")
    assert [p.name for p in fleet.profile_set.profiles()] == ["a-any", "b-x86", "c-lab"]


def test_host_files_match_profiles_by_labels(dirs: tuple[Path, Path]) -> None:
    hosts, profiles = dirs
    write(profiles / "rack.json", {"kernel_args": "rack=a", "match": {"labels": {"rack": "a"}}})
    write(hosts / "h1.json", {"mac": "aa:00:00:00:00:01", "labels": {"rack": "a"}})
    write(hosts / "h2.json", {"mac": "aa:00:00:00:00:02", "labels": {"rack": "b"}})
    fleet = Fleet(hosts, profiles)
    assert getattr(fleet.lookup("aa:00:00:00:00:01"), "kernel_args", None) == "rack=a"
    assert getattr(fleet.lookup("aa:00:00:00:00:02"), "kernel_args", None) == ""


def test_live_reload_and_broken_profiles(dirs: tuple[Path, Path]) -> None:
    hosts, profiles = dirs
    path = profiles / "web.json"
    write(path, {"distro": "one"})
    write(hosts / "w1.json", {"mac": "aa:00:00:00:00:01", "profile": "web"})
    fleet = Fleet(hosts, profiles, rescan_on_lookup=False)
    assert getattr(fleet.lookup("aa:00:00:00:00:01"), "distro", None) == "one"
    write(path, {"distro": "two"})
    bump(path)
    assert fleet.refresh()
    assert getattr(fleet.lookup("aa:00:00:00:00:01"), "distro", None) == "two"
    write(profiles / "bad.json", "{not json")
    write(profiles / "worse.json", {"kernel": "a b", "match": {}})
    assert fleet.refresh()
    errors = fleet.profile_set.errors
    assert "invalid JSON at line 1" in errors[str(profiles / "bad.json")]
    assert "key 'kernel' must be one word" in errors[str(profiles / "worse.json")]
    assert getattr(fleet.lookup("aa:00:00:00:00:01"), "distro", None) == "two"
    assert not fleet.refresh()


def request(code: int | None, *, ipxe: bool = False, http: bool = False) -> DhcpPacket:
    options: list[tuple[int, bytes]] = [(OptionCode.MESSAGE_TYPE, bytes((MessageType.DISCOVER,)))]
    if code is not None:
        options.append((OptionCode.CLIENT_ARCH, struct.pack("!H", code)))
    if ipxe:
        options.append((OptionCode.USER_CLASS, b"iPXE"))
    vendor = b"HTTPClient:Arch:00016" if http else b"PXEClient:Arch:00007"
    options.append((OptionCode.VENDOR_CLASS_ID, vendor))
    return DhcpPacket(op=Op.BOOTREQUEST, xid=1, chaddr=bytes(6), options=tuple(options))


@pytest.mark.parametrize(
    ("packet", "traits"),
    [
        (request(0), ("x86_64", "bios", "")),
        (request(7), ("x86_64", "uefi", "")),
        (request(11), ("aarch64", "uefi", "")),
        (request(16, http=True), ("x86_64", "uefi-http", "")),
        (request(7, ipxe=True), ("x86_64", None, "")),
        (request(None), (None, None, "")),
        (request(42), (None, None, "")),
    ],
)
def test_client_traits(packet: DhcpPacket, traits: tuple[object, ...]) -> None:
    assert client_traits(packet, "0.0.0.0") == traits


def test_hosts_made_from_profiles_stay_bounded(
    dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pxelab.hosts import fleet as fleet_module

    monkeypatch.setattr(fleet_module, "MAX_GENERATED", 3)
    hosts, profiles = dirs
    write(profiles / "all.json", {"distro": "demo", "match": {}})
    fleet = Fleet(hosts, profiles)
    made = [fleet.lookup(f"02:00:00:00:01:{n:02x}") for n in range(10)]
    assert all(h is not None for h in made)
    assert len(fleet._generated) == 3
    again = fleet.lookup("02:00:00:00:01:00")  # forgotten, made again the same
    assert again is not None and again.name == "all-020000000100"

"""Nothing from a host file can add an iPXE command or break out of a kernel line or YAML value."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pxelab.boot.render import Renderer, RenderError
from pxelab.errors import HostFileError
from pxelab.hosts.inventory import parse_host

BASE = "http://10.0.0.1:8080"
OK = {"name": "ok", "mac": "52:54:00:00:00:01", "distro": "demo"}
TRICKY = "\n\r\t\x00\x1b\u2028 ;${}|&#'\"\\-_."
"""Characters that could end an iPXE line, chain a command or expand a setting."""


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "web\nshell"),
        ("name", "web;reboot"),
        ("name", "a b"),
        ("name", "x" * 64),
        ("name", "-dash"),
        ("kernel_args", "quiet\nshell"),
        ("kernel_args", "quiet\rshell"),
        ("kernel_args", "quiet || shell"),
        ("kernel_args", "quiet && chain http://evil/"),
        ("kernel_args", "root=${root-path}"),
        ("kernel_args", "tab\there"),
        ("kernel", "vmlinuz\nshell"),
        ("kernel", "vm${x}linuz"),
        ("initrd", "a||b"),
        ("iso", "my live.iso"),
        ("repo", "http://x/\nshell"),
        ("distro", "../etc"),
        ("distro", "a/b"),
        ("distro", "deb ian"),
        ("ssh_key", "ssh-ed25519 AAAA me\nshell"),
        ("ssh_key", 'ssh-ed25519 AAAA "quoted"'),
        ("ssh_key", "ssh-ed25519 AAAA it's"),
        ("ssh_key", "ssh-ed25519 AAAA $(reboot)"),
        ("ssh_keys", ["ssh-ed25519 AAAA ok", 5]),
        ("template", "windows"),
    ],
)
def test_unsafe_host_fields_are_refused(field: str, value: object) -> None:
    with pytest.raises(HostFileError, match=rf"h\.json: key '{field}'"):
        parse_host({**OK, field: value}, "h.json")


def test_file_name_is_checked_as_a_host_name_too() -> None:
    with pytest.raises(HostFileError, match="key 'name'"):
        parse_host({"mac": "52:54:00:00:00:01"}, "/hosts/bad name.json")


@pytest.mark.parametrize(
    ("distro", "template"),
    [
        ("ubuntu-24.04", "ubuntu"),
        ("Ubuntu-22.04", "ubuntu"),
        ("fedora-41", "fedora"),
        ("rhel-9", "fedora"),
        ("rocky-9", "fedora"),
        ("debian-12", "debian"),
        ("demo", "generic"),
        (None, "generic"),
    ],
)
def test_template_follows_the_distro_unless_given(distro: str | None, template: str) -> None:
    data = {"mac": "52:54:00:00:00:01", **({"distro": distro} if distro else {})}
    assert parse_host(data, "h.json").template == template
    assert parse_host({**data, "template": "generic"}, "h.json").template == "generic"


def test_every_script_keeps_one_command_per_line() -> None:
    renderer = Renderer()
    for template in ("generic", "ubuntu", "fedora", "debian"):
        host = parse_host(
            {**OK, "template": template, "kernel_args": "a=<b> 'c' \"d\" e&f x|y"}, "h.json"
        )
        lines = renderer.boot_script(host, BASE).splitlines()
        assert [line.split(" ", 1)[0] for line in lines] == [
            "#!ipxe",
            "echo",
            "kernel",
            "initrd",
            "boot",
        ]


def test_yaml_values_are_quoted() -> None:
    host = parse_host({**OK, "name": "n-1.lab", "ssh_key": "ssh-ed25519 AAAA a: b-c"}, "h.json")
    data = yaml.safe_load(Renderer().install_data(host, BASE, "user-data"))
    assert data["hostname"] == "n-1.lab"
    assert data["users"][0]["ssh_authorized_keys"] == ["ssh-ed25519 AAAA a: b-c"]


def test_missing_values_and_bad_extra_fields_are_render_errors(tmp_path: Path) -> None:
    fedora = parse_host({"name": "f", "mac": "52:54:00:00:00:02", "template": "fedora",
                         "kernel": "http://m/vmlinuz", "initrd": "http://m/initrd"}, "f.json")  # fmt: skip
    with pytest.raises(RenderError, match=r"boot-fedora\.ipxe\.j2 for host 'f'"):
        Renderer().boot_script(fedora, BASE)  # no distro and no repo: no inst.repo
    debian = parse_host({**OK, "template": "debian", "mirror": "evil\nd-i x"}, "d.json")
    with pytest.raises(RenderError, match=r"preseed\.cfg\.j2"):
        Renderer().install_data(debian, BASE, "preseed")


def test_install_data_templates_can_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "cloud-init").mkdir()
    (tmp_path / "cloud-init" / "meta-data.j2").write_text("instance-id: {{ host.name }}-custom\n")
    host = parse_host(OK, "ok.json")
    assert Renderer(tmp_path).install_data(host, BASE, "meta-data") == "instance-id: ok-custom\n"
    (tmp_path / "kickstart.ks.j2").write_text("{{ host.nope }}")
    with pytest.raises(RenderError, match=r"kickstart\.ks\.j2 for host 'ok' kickstart"):
        Renderer(tmp_path).install_data(host, BASE, "kickstart")


UNSAFE = ["\n", "\r", "\t", "\x00", "\x1b", "\u2028", "\x7f", "${", "||", "&&"]
"""What a host file must never get onto an iPXE line: line ends, control characters, iPXE syntax."""
ALLOWED = "abcxyz019=.,:/" * 4 + "'\"<>;#-_\\@%+*!?~$&|{}"
"""Printable characters a kernel argument may carry, plain ones more often (a single `$`, `|` or
`&` is not iPXE syntax, but two in a row may be)."""
NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
"""The README's host name rule: letters, digits, '-', '_', '.'; at most 63; not a leading '-'."""


def _unsafe(text: str) -> bool:
    return any(not c.isprintable() for c in text) or any(b in text for b in ("${", "||", "&&"))


@st.composite
def _mostly_valid(draw: st.DrawFn, valid: st.SearchStrategy[str], targets: list[str]) -> str:
    """A valid value, or (one time in four) that value with one targeted bad part put in."""
    text = draw(valid)
    if draw(st.sampled_from((False, False, False, True))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(targets)) + text[at:]
    return text


def _outcome(data: dict[str, object]) -> str:
    """Parse the host file; when accepted, show every script keeps one command per line."""
    try:
        host = parse_host({**OK, **data}, "h.json")
    except HostFileError:
        return "refused"
    for template in ("generic", "ubuntu", "fedora", "debian"):
        script = Renderer().boot_script(replace(host, template=template), BASE)
        lines = script.splitlines()
        assert [line.split(" ", 1)[0] for line in lines] == [
            "#!ipxe",
            "echo",
            "kernel",
            "initrd",
            "boot",
        ]
        assert not any(bad in script for bad in ("${", "||", "&&"))
        assert host.kernel_args in lines[2]
    return "accepted"


KERNEL_ARGS = st.lists(st.text(ALLOWED, min_size=1, max_size=12), max_size=6).map(" ".join)


def test_kernel_args_are_refused_exactly_when_unsafe_else_stay_on_the_kernel_line() -> None:
    seen: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None, database=None)
    @given(_mostly_valid(KERNEL_ARGS, UNSAFE))
    def check(kernel_args: str) -> None:
        outcome = _outcome({"kernel_args": kernel_args})
        assert outcome == ("refused" if _unsafe(kernel_args) else "accepted"), repr(kernel_args)
        seen[outcome] += 1

    check()
    # both paths ran, and the accepted one most: the values are mostly valid on purpose
    assert seen["accepted"] >= 100 and seen["refused"] >= 20, seen


def test_names_and_kernels_are_refused_exactly_when_invalid_else_stay_on_their_lines() -> None:
    seen: Counter[str] = Counter()
    names = _mostly_valid(st.from_regex(NAME, fullmatch=True), [*UNSAFE, *TRICKY, "/", "x" * 63])
    kernels = _mostly_valid(st.from_regex(r"[A-Za-z0-9_./:-]{1,30}", fullmatch=True), UNSAFE)

    @settings(max_examples=200, deadline=None, database=None)
    @given(names, kernels)
    def check(name: str, kernel: str) -> None:
        valid = re.fullmatch(NAME, name) and not _unsafe(kernel) and " " not in kernel
        outcome = _outcome({"name": name, "kernel": kernel})
        assert outcome == ("accepted" if valid else "refused"), (name, kernel)
        seen[outcome] += 1

    check()
    assert seen["accepted"] >= 100 and seen["refused"] >= 20, seen

"""Path confinement for TFTP and HTTP: what a client may name, and symlinks that leave the root."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pxelab.http.app import confined
from pxelab.paths import (
    MAX_COMPONENT_BYTES,
    MAX_FILENAME_BYTES,
    NotAFileError,
    PathRefused,
    hidden,
    regular_file,
    relative_path,
    resolve,
)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("ipxe.efi", "ipxe.efi"),
        ("/ipxe.efi", "ipxe.efi"),
        ("//grub//x86_64-efi/./normal.mod", "grub/x86_64-efi/normal.mod"),
        ("./undionly.kpxe", "undionly.kpxe"),
        ("pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/01-52-54-00-12-34-56"),
        ("a..b/c..d/e..", "a..b/c..d/e.."),
        ("caf\u00e9.efi", "caf\u00e9.efi"),
        ("x" * MAX_COMPONENT_BYTES, "x" * MAX_COMPONENT_BYTES),
    ],
)
def test_accepted_names(filename: str, expected: str) -> None:
    assert relative_path(filename) == PurePosixPath(expected)


@pytest.mark.parametrize(
    ("filename", "reason"),
    [
        ("..", r"'\.\.' component"),
        ("../etc/passwd", r"'\.\.' component"),
        ("/../etc/passwd", r"'\.\.' component"),
        ("grub/../../etc/shadow", r"'\.\.' component"),
        ("grub/..", r"'\.\.' component"),
        ("..\\..\\boot.ini", "backslash"),
        ("\\ipxe.efi", "backslash"),
        ("boot\\bcd", "backslash"),
        ("ipxe.efi\0.txt", "NUL"),
        ("", "root directory"),
        ("/", "root directory"),
        ("/./", "root directory"),
        ("a/" * 300, "bytes long"),
        ("a/" + "b" * (MAX_COMPONENT_BYTES + 1), "component is longer"),
        ("\u00e9" * (MAX_COMPONENT_BYTES // 2 + 1), "component is longer"),
        ("a..b/..c/d..", "hidden component"),  # a dot name, though not '..'
        (".incoming/partial.iso", "hidden component"),
        ("/images/.incoming/x.iso", "hidden component"),
        ("grub/.x", "hidden component"),
        ("...", "hidden component"),
    ],
)
def test_refused_names(filename: str, reason: str) -> None:
    with pytest.raises(PathRefused, match=reason):
        relative_path(filename)


def test_length_limit_counts_utf8_bytes() -> None:
    ok = "/".join(["d" * 100] * 5)  # 504 bytes
    assert len(ok.encode()) <= MAX_FILENAME_BYTES
    relative_path(ok)
    with pytest.raises(PathRefused, match="bytes long"):
        relative_path("/".join(["\u00e9" * 60] * 5))


@given(st.text(max_size=80))
def test_accepted_names_never_climb(filename: str) -> None:
    try:
        path = relative_path(filename)
    except PathRefused:
        return
    assert not path.is_absolute()
    assert ".." not in path.parts
    assert path.parts


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A TFTP root next to a secret, with symlinks pointing in and out."""
    root = tmp_path / "root"
    (root / "grub").mkdir(parents=True)
    (root / "ipxe.efi").write_bytes(b"MZ")
    (root / "grub" / "grub.cfg").write_text("normal\n")
    (tmp_path / "secret").write_text("secret\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x").write_text("x\n")
    (root / "link-in").symlink_to("ipxe.efi")
    (root / "grub" / "up-in").symlink_to("../ipxe.efi")
    (root / "link-out").symlink_to(tmp_path / "secret")
    (root / "rel-out").symlink_to("../secret")
    (root / "dir-out").symlink_to("../outside")
    (root / "dangling-out").symlink_to("/nonexistent/elsewhere")
    (root / "self").symlink_to(".")
    return Path(os.path.realpath(root))


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("ipxe.efi", "ipxe.efi"),
        ("/ipxe.efi", "ipxe.efi"),
        ("/grub/grub.cfg", "grub/grub.cfg"),
        ("link-in", "ipxe.efi"),
        ("grub/up-in", "ipxe.efi"),
        ("self/ipxe.efi", "ipxe.efi"),
        ("missing.efi", "missing.efi"),
    ],
)
def test_resolve_inside(root: Path, filename: str, expected: str) -> None:
    assert resolve(root, filename) == root / expected


@pytest.mark.parametrize(
    "filename", ["link-out", "rel-out", "dir-out/x", "/dir-out/x", "dangling-out", "self"]
)
def test_resolve_refuses_symlinks_out_of_the_root(root: Path, filename: str) -> None:
    with pytest.raises(PathRefused):
        resolve(root, filename)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("ipxe.efi", "ipxe.efi"),
        ("/grub/grub.cfg", "grub/grub.cfg"),
        ("link-in", "ipxe.efi"),
        ("self/ipxe.efi", "ipxe.efi"),
    ],
)
def test_regular_file_inside(root: Path, filename: str, expected: str) -> None:
    assert regular_file(root, filename) == root / expected


@pytest.mark.parametrize(
    ("filename", "error"),
    [
        ("missing.efi", FileNotFoundError),
        ("grub", NotAFileError),
        ("link-out", PathRefused),
        ("dir-out/x", PathRefused),
        ("../secret", PathRefused),
        ("grub/.hidden", PathRefused),
        ("self", PathRefused),
        ("loop", FileNotFoundError),  # a symlink to itself names no file
    ],
)
def test_regular_file_refusals(root: Path, filename: str, error: type[Exception]) -> None:
    (root / "grub" / ".hidden").write_text("partial\n")
    (root / "loop").symlink_to("loop")
    with pytest.raises(error):
        regular_file(root, filename)


@pytest.mark.parametrize(
    ("filename", "is_hidden"),
    [
        (".incoming/x.iso", True),
        ("demo/.incoming/x.iso", True),
        ("demo/x86_64/.vmlinuz.part", True),
        ("..", True),
        ("demo/x86_64/vmlinuz", False),
        ("./demo/vmlinuz", False),  # '.' is no name, it is dropped
        ("a..b/c..", False),
        ("", False),
    ],
)
def test_hidden(filename: str, is_hidden: bool) -> None:
    assert hidden(filename) is is_hidden


def test_http_and_tftp_share_the_rule(root: Path) -> None:
    """The HTTP file routes answer exactly what the shared rule allows."""
    (root / "grub" / ".hidden").write_text("partial\n")
    for name in ("ipxe.efi", "link-in", "grub/grub.cfg", "grub/.hidden", "link-out", "../secret"):
        try:
            expected: Path | None = regular_file(root, name)
        except (PathRefused, OSError):
            expected = None
        assert confined(root, name) == expected, name
    assert confined(root, "grub/.hidden") is None

"""The shipped catalog, catalog parsing errors, checksum lists and `*` resolution (pure)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from pxelab.assets import AssetError
from pxelab.assets.catalog import (
    check_sha256,
    list_name,
    load_catalog,
    normalize_arch,
    parse_catalog,
    parse_checksums,
    resolve_url,
)
from pxelab.assets.store import Manifest, arch_dir
from pxelab.cli.assets import default_catalog

H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64


def test_the_shipped_catalog_has_the_promised_distros() -> None:
    catalog = load_catalog([default_catalog()])
    for distro in ("ubuntu-24.04", "debian-12", "debian-13", "fedora-43"):
        for arch in ("amd64", "arm64"):
            source = catalog.get(distro, arch)
            assert source.checksums.startswith("https://")
    ubuntu = catalog.get("ubuntu-24.04", "x86_64")
    assert ubuntu.iso is not None and ubuntu.iso.startswith("https://releases.ubuntu.com/24.04/")
    assert (ubuntu.kernel, ubuntu.initrd) == ("casper/vmlinuz", "casper/initrd")
    assert ubuntu.iso_name == "live-server.iso"  # render.DEFAULT_ISO, the casper url= file
    fedora = catalog.get("fedora-43", "aarch64")
    assert (fedora.kernel, fedora.initrd) == ("images/pxeboot/vmlinuz", "images/pxeboot/initrd.img")
    debian = catalog.get("debian-13", "arm64")
    assert not debian.is_iso
    assert list_name(debian.kernel, debian.checksums) == "netboot/debian-installer/arm64/linux"
    assert list_name(debian.initrd, debian.checksums).endswith("arm64/initrd.gz")


def test_unknown_entries_are_named() -> None:
    catalog = load_catalog([default_catalog()])
    with pytest.raises(AssetError, match=r"no nope/amd64 \(it has: debian-12/amd64"):
        catalog.get("nope", "amd64")
    with pytest.raises(AssetError, match="unknown architecture 'ppc64el'"):
        catalog.get("debian-12", "ppc64el")


def test_a_user_catalog_adds_and_replaces(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(
        '["debian-12".amd64]\nchecksums = "http://mirror.lan/d/SHA256SUMS"\n'
        'kernel = "http://mirror.lan/d/linux"\ninitrd = "http://mirror.lan/d/initrd.gz"\n'
        '[alma.x86_64]\niso = "http://mirror.lan/a/alma.iso"\n'
        'checksums = "http://mirror.lan/a/CHECKSUM"\nkernel = "images/pxeboot/vmlinuz"\n'
        'initrd = "images/pxeboot/initrd.img"\n'
    )
    catalog = load_catalog([default_catalog(), mine])
    assert catalog.get("debian-12", "amd64").kernel == "http://mirror.lan/d/linux"
    assert catalog.get("debian-12", "arm64").kernel.startswith("https://deb.debian.org/")
    assert catalog.get("alma", "amd64").iso == "http://mirror.lan/a/alma.iso"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[d.amd64]\nkernel = "http://x/k"\ninitrd = "http://x/i"',
            r"\[d.amd64\]: key 'checksums' must be",
        ),
        (
            '[d.amd64]\nchecksums = "ftp://x/S"\nkernel = "http://x/k"\ninitrd = "http://x/i"',
            "must be an http",
        ),
        (
            '[d.amd64]\nchecksums = "http://x/S"\nkernel = "k"\ninitrd = "http://x/i"',
            "'kernel' must be an http",
        ),
        (
            '[d.mips]\nchecksums = "http://x/S"\nkernel = "k"\ninitrd = "i"',
            r"\[d.mips\]: unknown architecture",
        ),
        (
            '[d.amd64]\nchecksums = "http://x/S"\nkernel = "http://x/k"\ninitrd = "http://x/i"\nkernal = 1',
            "unknown keys",
        ),
        ("d = 3", "'d' must be a table"),
        (
            '[d.amd64]\niso_name = "x.iso"\nchecksums = "http://x/S"\nkernel = "http://x/k"\n'
            'initrd = "http://x/i"',
            "'iso_name' must be a plain file name, with 'iso'",
        ),
        (
            '[d.amd64]\niso = "http://x/a.iso"\niso_name = "../x.iso"\nchecksums = "http://x/S"\n'
            'kernel = "k"\ninitrd = "i"',
            "'iso_name' must be a plain file name",
        ),
    ],
)
def test_catalog_errors_name_the_file_and_table(toml: str, message: str) -> None:
    data: dict[str, Any] = tomllib.loads(toml)
    with pytest.raises(AssetError, match=message) as info:
        parse_catalog(data, "my.toml")
    assert str(info.value).startswith("my.toml")


def test_an_unreadable_catalog_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    with pytest.raises(AssetError, match=rf"{bad}: invalid TOML"):
        load_catalog([bad])
    with pytest.raises(AssetError, match="cannot read the catalog"):
        load_catalog([tmp_path / "missing.toml"])


def test_checksum_lists_gnu_bsd_and_signed() -> None:
    text = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
        f"# Fedora-Server-netinst-x86_64-43-1.6.iso: 1234 bytes\n"
        f"SHA256 (Fedora-Server-netinst-x86_64-43-1.6.iso) = {H1.upper()}\n"
        f"{H2} *ubuntu-24.04.3-live-server-amd64.iso\n"
        f"{H3}  ./netboot/debian-installer/amd64/linux\n"
        "d41d8cd98f00b204e9800998ecf8427e  md5-is-ignored\n"
        "-----BEGIN PGP SIGNATURE-----\nabc\n"
    )
    assert parse_checksums(text, "CHECKSUM") == {
        "Fedora-Server-netinst-x86_64-43-1.6.iso": H1,
        "ubuntu-24.04.3-live-server-amd64.iso": H2,
        "netboot/debian-installer/amd64/linux": H3,
    }
    with pytest.raises(AssetError, match="SUMS: no SHA-256 checksums found"):
        parse_checksums("hello\n", "SUMS")


def test_a_star_picks_the_newest_point_release() -> None:
    sums = {
        "ubuntu-24.04.2-live-server-amd64.iso": H1,
        "ubuntu-24.04.10-live-server-amd64.iso": H2,
        "ubuntu-24.04.9-live-server-amd64.iso": H3,
        "ubuntu-24.04.10-desktop-amd64.iso": H1,
    }
    url, sha = resolve_url(
        "https://r.example/24.04/ubuntu-24.04*-live-server-amd64.iso",
        "https://r.example/24.04/SHA256SUMS",
        sums,
    )
    assert (url, sha) == ("https://r.example/24.04/ubuntu-24.04.10-live-server-amd64.iso", H2)
    with pytest.raises(AssetError, match=r"no file matches 'x\*.iso'"):
        resolve_url("https://r.example/24.04/x*.iso", "https://r.example/24.04/SHA256SUMS", sums)
    with pytest.raises(AssetError, match=r"no checksum for 'other\.iso'"):
        resolve_url("https://r.example/24.04/other.iso", "https://r.example/24.04/SHA256SUMS", sums)
    with pytest.raises(AssetError, match="not under the directory"):
        resolve_url("https://r.example/elsewhere/x.iso", "https://r.example/24.04/SHA256SUMS", sums)


def test_arch_names_and_hashes() -> None:
    assert [normalize_arch(a) for a in ("x86_64", "AMD64", "aarch64", "arm64")] == [
        "amd64",
        "amd64",
        "arm64",
        "arm64",
    ]
    assert check_sha256(H1.upper(), "--sha256") == H1
    with pytest.raises(AssetError, match="--sha256: 'abc' is not a SHA-256"):
        check_sha256("abc", "--sha256")


def test_manifest_round_trip_and_bad_names(tmp_path: Path) -> None:
    text = (
        '{"distro": "d", "arch": "amd64", "source": "u", "verified": true, "fetched_at": "t",'
        ' "files": {"vmlinuz": {"size": 3, "sha256": "' + H1 + '", "origin": "casper/vmlinuz"}}}'
    )
    manifest = Manifest.from_json(text, "m.json")
    assert Manifest.from_json(manifest.to_json(), "again") == manifest
    with pytest.raises(AssetError, match=r"m\.json: not a pxelab manifest"):
        Manifest.from_json('{"distro": "d"}', "m.json")
    for bad in ("", "../x", ".incoming", "a/b"):
        with pytest.raises(AssetError, match="bad distro name"):
            arch_dir(tmp_path, bad, "amd64")

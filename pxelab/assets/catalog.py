"""The asset catalog (which upstream files make a distro bootable) and checksum lists; pure.

Nothing here opens a socket; `load_catalog` only reads the TOML files it is given.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

from pxelab.assets import AssetError
from pxelab.dhcp.arch import ARCH_ALIASES, IMAGE_ARCH

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_BSD_LINE = re.compile(r"^SHA256 \((?P<name>.+)\) = (?P<hex>[0-9a-fA-F]{64})$")
_GNU_LINE = re.compile(r"^(?P<hex>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")


@dataclass(frozen=True)
class Source:
    """Where one distro release for one architecture comes from."""

    distro: str
    """Directory name under the images dir, and the hosts' `distro` value (e.g. `debian-12`)."""
    arch: str
    """Debian's architecture name: `amd64` or `arm64`."""
    description: str
    """One line for people (`pxelab assets list`)."""
    checksums: str
    """URL of the published SHA256SUMS list (GNU or BSD `SHA256 (name) = hex` lines)."""
    iso: str | None
    """URL of the ISO, or None for netboot files; `*` in its last part is matched in the list."""
    kernel: str
    """Path of the kernel inside the ISO, or its URL for netboot files."""
    initrd: str
    """Path of the initrd inside the ISO, or its URL for netboot files."""
    iso_name: str | None = None
    """The ISO's name in the cache (a stable one the templates know), else its upstream name."""

    @property
    def is_iso(self) -> bool:
        """True when kernel and initrd come out of an ISO."""
        return self.iso is not None


@dataclass(frozen=True)
class Catalog:
    """Every known source, by (distro, arch)."""

    sources: Mapping[tuple[str, str], Source]
    """(distro, Debian arch) -> Source."""

    def get(self, distro: str, arch: str) -> Source:
        """The source of distro for arch; AssetError lists what the catalog has."""
        key = (distro, normalize_arch(arch))
        if key not in self.sources:
            known = ", ".join(f"{d}/{a}" for d, a in sorted(self.sources)) or "nothing"
            raise AssetError(f"the catalog has no {key[0]}/{key[1]} (it has: {known})")
        return self.sources[key]


def normalize_arch(arch: str) -> str:
    """`amd64`/`x86_64` -> `amd64`, `arm64`/`aarch64` -> `arm64`; AssetError otherwise."""
    try:
        return IMAGE_ARCH[ARCH_ALIASES[arch.strip().lower()]]
    except KeyError:
        raise AssetError(f"unknown architecture {arch!r} (use amd64 or arm64)") from None


def _optional_text(where: str, table: Mapping[str, Any], key: str) -> str | None:
    return None if table.get(key) is None else _text(where, table, key)


def _text(where: str, table: Mapping[str, Any], key: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise AssetError(f"{where}: key {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _url(where: str, table: Mapping[str, Any], key: str) -> str:
    url = _text(where, table, key)
    if urlsplit(url).scheme not in ("http", "https"):
        raise AssetError(f"{where}: key {key!r} must be an http(s) URL, got {url!r}")
    return url


def parse_catalog(data: Mapping[str, Any], source: str) -> dict[tuple[str, str], Source]:
    """The sources in one parsed TOML document: `[<distro>.<arch>]` tables under each distro."""
    result: dict[tuple[str, str], Source] = {}
    for distro, table in data.items():
        if not isinstance(table, dict):
            raise AssetError(f"{source}: {distro!r} must be a table of architectures")
        description = table.get("description", distro)
        if not isinstance(description, str):
            raise AssetError(f"{source}: [{distro}] key 'description' must be a string")
        for arch, entry in table.items():
            if arch == "description":
                continue
            where = f"{source}: [{distro}.{arch}]"
            if not isinstance(entry, dict):
                raise AssetError(f"{where}: expected a table")
            try:
                debian_arch = normalize_arch(arch)
            except AssetError as exc:
                raise AssetError(f"{where}: {exc}") from None
            unknown = set(entry) - {"iso", "iso_name", "checksums", "kernel", "initrd"}
            if unknown:
                raise AssetError(f"{where}: unknown keys {sorted(unknown)}")
            iso = _url(where, entry, "iso") if "iso" in entry else None
            iso_name = _optional_text(where, entry, "iso_name")
            if iso_name is not None and (iso is None or "/" in iso_name or iso_name[0] == "."):
                raise AssetError(f"{where}: 'iso_name' must be a plain file name, with 'iso'")
            kernel = _text(where, entry, "kernel")
            initrd = _text(where, entry, "initrd")
            if iso is None:
                kernel, initrd = _url(where, entry, "kernel"), _url(where, entry, "initrd")
            result[distro, debian_arch] = Source(
                distro=distro,
                arch=debian_arch,
                description=description,
                checksums=_url(where, entry, "checksums"),
                iso=iso,
                kernel=kernel,
                initrd=initrd,
                iso_name=iso_name,
            )
    return result


def load_catalog(paths: Iterable[Path]) -> Catalog:
    """The catalog from TOML files; later files add to or replace entries of earlier ones."""
    sources: dict[tuple[str, str], Source] = {}
    for path in paths:
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise AssetError(f"{path}: cannot read the catalog: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise AssetError(f"{path}: invalid TOML: {exc}") from None
        sources.update(parse_catalog(data, str(path)))
    return Catalog(sources)


def parse_checksums(text: str, source: str) -> dict[str, str]:
    """name -> lowercase SHA-256 from a GNU (`hex  name`) or BSD (`SHA256 (name) = hex`) list.

    Other lines (PGP armour, comments, other digests) are skipped; names lose `./` and `*`.
    """
    sums: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        match = _BSD_LINE.match(line) or _GNU_LINE.match(line)
        if match:
            name = match["name"].strip().removeprefix("*").removeprefix("./")
            sums[name] = match["hex"].lower()
    if not sums:
        raise AssetError(f"{source}: no SHA-256 checksums found in the list")
    return sums


def list_name(file_url: str, list_url: str) -> str:
    """The name a file has in a checksum list: its URL path relative to the list's directory."""
    base = PurePosixPath(urlsplit(urljoin(list_url, ".")).path)
    path = PurePosixPath(urlsplit(file_url).path)
    if not path.is_relative_to(base):
        raise AssetError(f"{file_url} is not under the directory of its checksum list {list_url}")
    return str(path.relative_to(base))


def _version_key(name: str) -> list[tuple[int, int | str]]:
    return [(1, int(p)) if p.isdigit() else (0, p) for p in re.split(r"(\d+)", name)]


def resolve_url(file_url: str, list_url: str, sums: Mapping[str, str]) -> tuple[str, str]:
    """(URL, sha256) of a file; a `*` pattern picks the highest version the list names.

    Ubuntu keeps only the newest point release (24.04.N) in its directory, so the catalog says
    `ubuntu-24.04*-live-server-amd64.iso` and the published list says which one is there now.
    """
    name = list_name(file_url, list_url)
    if "*" in name:
        matches = sorted((n for n in sums if fnmatch.fnmatchcase(n, name)), key=_version_key)
        if not matches:
            raise AssetError(f"{list_url}: no file matches {name!r}")
        name = matches[-1]
        file_url = urljoin(list_url, name)
    if name not in sums:
        raise AssetError(f"{list_url}: the list has no checksum for {name!r}")
    return file_url, sums[name]


def check_sha256(value: str, where: str) -> str:
    """A SHA-256 in lowercase hex; AssetError names where it came from otherwise."""
    if not _HEX64.match(value):
        raise AssetError(f"{where}: {value!r} is not a SHA-256 (64 hex digits)")
    return value.lower()

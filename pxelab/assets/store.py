"""The image cache: `<images>/<distro>/<arch>/{vmlinuz,initrd,<iso>}` plus `manifest.json`.

Files are prepared in `<images>/.incoming/<distro>/<arch>/` and renamed in only once verified;
the manifest is written last, so a directory without one was never finished.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from pxelab.assets import AssetError
from pxelab.assets.catalog import Source, parse_checksums, resolve_url
from pxelab.assets.download import CHUNK, download, fetch_text, hash_file, meta_path
from pxelab.assets.extract import extract_async
from pxelab.assets.progress import Progress
from pxelab.files import write_atomic

MANIFEST = "manifest.json"
INCOMING = ".incoming"
KERNEL, INITRD = "vmlinuz", "initrd"


@dataclass(frozen=True)
class FileEntry:
    """One cached file, as the manifest records it."""

    size: int
    """Size in bytes."""
    sha256: str
    """SHA-256 of the cached file."""
    origin: str
    """Its URL, or its path inside the ISO it came from."""


@dataclass(frozen=True)
class Manifest:
    """What one `<distro>/<arch>` directory holds and where it came from."""

    distro: str
    """The distro directory name."""
    arch: str
    """Debian's architecture name (amd64, arm64)."""
    source: str
    """URL of the ISO or netboot files' list, or the local ISO's path for an import."""
    verified: bool
    """True when the source's SHA-256 matched a published (or given) checksum."""
    fetched_at: str
    """When it was cached, ISO 8601 UTC."""
    files: Mapping[str, FileEntry] = field(default_factory=dict)
    """File name in the directory -> its entry."""

    def to_json(self) -> str:
        """The manifest as pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        """Parse a manifest; AssetError names `where` when it is not one."""
        try:
            data: Any = json.loads(text)
            files = {k: FileEntry(**v) for k, v in data.pop("files").items()}
            return cls(files=files, **data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise AssetError(f"{where}: not a pxelab manifest: {exc}") from None


def arch_dir(images: Path, distro: str, arch: str) -> Path:
    """Where a distro's files for arch live (and are served from, at /images/<distro>/<arch>/)."""
    if not distro or "/" in distro or distro.startswith("."):
        raise AssetError(f"bad distro name {distro!r}: one path component, not starting with '.'")
    return images / distro / arch


def incoming_dir(images: Path, distro: str, arch: str) -> Path:
    """Where downloads and extractions for a distro and arch are prepared."""
    return images / INCOMING / distro / arch


def read_manifest(directory: Path) -> Manifest | None:
    """The manifest of a cache directory, or None when there is none."""
    path = directory / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AssetError(f"{path}: cannot read: {exc.strerror}") from None
    return Manifest.from_json(text, str(path))


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    return hash_file(path).hexdigest()


def _install(images: Path, manifest: Manifest, staged: Mapping[str, Path]) -> Manifest:
    """Rename staged files into the cache directory, then write the manifest."""
    target = arch_dir(images, manifest.distro, manifest.arch)
    target.mkdir(parents=True, exist_ok=True)
    old = read_manifest(target)
    (target / MANIFEST).unlink(missing_ok=True)
    for name, path in staged.items():
        os.replace(path, target / name)
        meta_path(path).unlink(missing_ok=True)
    if old is not None:
        for name in set(old.files) - set(staged):  # e.g. last point release's ISO
            (target / name).unlink(missing_ok=True)
    write_atomic(target / MANIFEST, manifest.to_json())
    return manifest


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expected_files(source: Source, sums: Mapping[str, str]) -> dict[str, str]:
    """File name in the cache -> published SHA-256, for the files a source is checked by."""
    if source.iso is not None:
        url, sha = resolve_url(source.iso, source.checksums, sums)
        return {source.iso_name or PurePosixPath(urlsplit(url).path).name: sha}
    return {
        name: resolve_url(url, source.checksums, sums)[1]
        for name, url in ((KERNEL, source.kernel), (INITRD, source.initrd))
    }


def is_current(images: Path, source: Source, sums: Mapping[str, str]) -> Manifest | None:
    """The manifest if the cache already holds these exact verified files, else None."""
    directory = arch_dir(images, source.distro, source.arch)
    manifest = read_manifest(directory)
    if manifest is None or not manifest.verified:
        return None
    for name, sha in expected_files(source, sums).items():
        entry = manifest.files.get(name)
        if entry is None or entry.sha256 != sha:
            return None
    for name, entry in manifest.files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != entry.size:
            return None
    return manifest


@contextmanager
def locked(images: Path, distro: str, arch: str) -> Iterator[Path]:
    """Hold the staging directory of distro/arch for one command; yields the directory.

    A second `pxelab assets` command for the same distro and arch fails at once instead of
    writing into the same `.part` files.
    """
    arch_dir(images, distro, arch)  # checks the name
    staging = incoming_dir(images, distro, arch)
    staging.mkdir(parents=True, exist_ok=True)
    with (staging / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AssetError(
                f"{distro}/{arch}: another pxelab assets command is working on it "
                f"(lock {staging / '.lock'})"
            ) from None
        yield staging


async def fetch(
    session: aiohttp.ClientSession,
    source: Source,
    images: Path,
    progress: Progress | None = None,
    force: bool = False,
) -> tuple[Manifest, bool]:
    """Download, verify and (for ISOs) extract a catalog source; (manifest, was it new)."""
    with locked(images, source.distro, source.arch):
        return await _fetch(session, source, images, progress, force)


async def _fetch(
    session: aiohttp.ClientSession,
    source: Source,
    images: Path,
    progress: Progress | None,
    force: bool,
) -> tuple[Manifest, bool]:
    sums = parse_checksums(await fetch_text(session, source.checksums), source.checksums)
    if not force and (current := is_current(images, source, sums)) is not None:
        return current, False
    staging = incoming_dir(images, source.distro, source.arch)
    if source.iso is not None:
        iso_url, iso_sha = resolve_url(source.iso, source.checksums, sums)
        iso_name = source.iso_name or PurePosixPath(urlsplit(iso_url).path).name
        got = await download(session, iso_url, staging / f"{iso_name}.part", iso_sha, progress)
        files = await _extract_kernel(got.part, source.kernel, source.initrd, staging, progress)
        files[iso_name] = FileEntry(got.size, got.sha256, iso_url)
        staged = {KERNEL: staging / f"{KERNEL}.part", INITRD: staging / f"{INITRD}.part"}
        staged[iso_name] = got.part
        manifest = Manifest(source.distro, source.arch, iso_url, True, _now(), files)
    else:
        files, staged = {}, {}
        for name, url in ((KERNEL, source.kernel), (INITRD, source.initrd)):
            url, sha = resolve_url(url, source.checksums, sums)
            got = await download(session, url, staging / f"{name}.part", sha, progress)
            files[name] = FileEntry(got.size, got.sha256, url)
            staged[name] = got.part
        manifest = Manifest(source.distro, source.arch, source.checksums, True, _now(), files)
    return _install(images, manifest, staged), True


async def _extract_kernel(
    iso: Path, kernel: str, initrd: str, staging: Path, progress: Progress | None
) -> dict[str, FileEntry]:
    """Kernel and initrd out of the (verified) ISO into staging, as `.part` files."""
    targets = {kernel: staging / f"{KERNEL}.part", initrd: staging / f"{INITRD}.part"}
    if progress:
        progress.note(f"{iso.name.removesuffix('.part')}: extracting {kernel} and {initrd}")
    try:
        sizes = await extract_async(iso, targets)
    except AssetError:
        for path in targets.values():
            path.unlink(missing_ok=True)
        raise
    result = {}
    for (inside, path), name in zip(targets.items(), (KERNEL, INITRD), strict=True):
        sha = await asyncio.to_thread(sha256_file, path)
        result[name] = FileEntry(sizes[inside], sha, inside)
    return result


async def import_iso(
    iso: Path,
    distro: str,
    arch: str,
    kernel: str,
    initrd: str,
    images: Path,
    sha256: str | None = None,
    progress: Progress | None = None,
    name: str | None = None,
) -> Manifest:
    """Copy a local ISO into the cache (as `name`, default its own) and extract its kernel and initrd.

    With `sha256` the copy must match it (then the manifest says verified), else it is recorded
    as unverified. Nothing enters the cache when any step fails.
    """
    name = name or iso.name
    with locked(images, distro, arch) as staging:
        part = staging / f"{name}.part"
        size, got = await _copy_in(iso, part, sha256, progress)
        try:
            files = await _extract_kernel(part, kernel, initrd, staging, progress)
        except AssetError as exc:
            part.unlink(missing_ok=True)
            raise AssetError(str(exc).replace(str(part), str(iso))) from None
        files[name] = FileEntry(size, got, str(iso.resolve()))
        staged = {KERNEL: staging / f"{KERNEL}.part", INITRD: staging / f"{INITRD}.part"}
        staged[name] = part
        manifest = Manifest(distro, arch, str(iso.resolve()), sha256 is not None, _now(), files)
        return _install(images, manifest, staged)


async def _copy_in(
    iso: Path, part: Path, sha256: str | None, progress: Progress | None
) -> tuple[int, str]:
    """Copy the ISO to its `.part` while hashing; (size, SHA-256). AssetError on a mismatch."""
    if progress:
        progress.note(f"{iso}: copying into the cache")
    try:
        size, got = await asyncio.to_thread(_copy_hashing, iso, part)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise AssetError(f"{iso}: cannot copy: {exc.strerror or exc}") from None
    if sha256 is not None and got != sha256:
        part.unlink(missing_ok=True)
        raise AssetError(f"{iso}: SHA-256 mismatch: expected {sha256}, the file is {got}")
    return size, got


def _copy_hashing(src: Path, dst: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        while block := fin.read(CHUNK):
            fout.write(block)
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


@dataclass(frozen=True)
class CachedFile:
    """One row of `pxelab assets list`."""

    distro: str
    """The distro directory."""
    arch: str
    """The architecture directory."""
    name: str
    """The file name ('' for a directory-level note)."""
    size: int
    """Bytes on disk."""
    state: str
    """verified, unverified, CHANGED, MISSING, no manifest, or partial download."""


def list_cache(images: Path, check: bool = False) -> list[CachedFile]:
    """What the cache holds and whether it is verified; `check` re-hashes every file."""
    rows: list[CachedFile] = []
    if not images.is_dir():
        return rows
    for distro_dir in sorted(p for p in images.iterdir() if p.is_dir()):
        if distro_dir.name.startswith("."):
            continue
        for directory in sorted(p for p in distro_dir.iterdir() if p.is_dir()):
            rows.extend(_list_dir(distro_dir.name, directory, check))
    incoming = images / INCOMING
    for part in sorted(incoming.glob("*/*/*.part")) if incoming.is_dir() else []:
        distro, arch = part.parent.parent.name, part.parent.name
        rows.append(CachedFile(distro, arch, part.name, part.stat().st_size, "partial download"))
    return rows


def _list_dir(distro: str, directory: Path, check: bool) -> list[CachedFile]:
    arch = directory.name
    try:
        manifest = read_manifest(directory)
    except AssetError as exc:
        return [CachedFile(distro, arch, MANIFEST, 0, f"BROKEN ({exc})")]
    present = {p.name: p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST}
    rows = []
    if manifest is None:
        return [
            CachedFile(distro, arch, n, p.stat().st_size, "no manifest")
            for n, p in sorted(present.items())
        ]
    for name, entry in sorted(manifest.files.items()):
        path = present.pop(name, None)
        if path is None:
            rows.append(CachedFile(distro, arch, name, 0, "MISSING"))
            continue
        size = path.stat().st_size
        changed = size != entry.size or (check and sha256_file(path) != entry.sha256)
        state = "CHANGED" if changed else ("verified" if manifest.verified else "unverified")
        rows.append(CachedFile(distro, arch, name, size, state))
    rows.extend(
        CachedFile(distro, arch, n, p.stat().st_size, "not in manifest")
        for n, p in sorted(present.items())
    )
    return rows

"""Downloads with aiohttp into `.part` files: resume with Range, SHA-256 checked before use.

A server that ignores Range (200) restarts the file, never appends to it. The caller renames
the verified `.part` into the cache; an interrupted download leaves only the `.part` behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pxelab.assets import AssetError
from pxelab.assets.progress import Progress, human_bytes

CHUNK = 1 << 20
MAX_LIST_BYTES = 4 << 20
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class Downloaded:
    """A complete, verified `.part` file."""

    url: str
    """Where it came from."""
    part: Path
    """The `.part` file that holds it, ready to be renamed into the cache."""
    size: int
    """Its size in bytes."""
    sha256: str
    """Its SHA-256 (equal to the published one)."""
    resumed_from: int
    """Bytes that were already in the `.part` file and kept (0: a fresh download)."""


def meta_path(part: Path) -> Path:
    """Where the validators (URL, ETag, Last-Modified) of a `.part` file are kept."""
    return part.with_name(part.name + ".json")


def _read_meta(part: Path) -> dict[str, str]:
    try:
        data = json.loads(meta_path(part).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _write_meta(part: Path, url: str, response: aiohttp.ClientResponse) -> None:
    meta = {"url": url}
    for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
        if header in response.headers:
            meta[key] = response.headers[header]
    meta_path(part).write_text(json.dumps(meta))


def hash_file(path: Path) -> hashlib._Hash:
    """The SHA-256 state after a file's bytes, read in blocks (a resumed download hashes on)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    meta_path(part).unlink(missing_ok=True)


async def fetch_text(session: aiohttp.ClientSession, url: str) -> str:
    """A small text file (a checksum list); AssetError names the URL on any failure."""
    try:
        async with session.get(url) as response:
            if response.status != 200:
                raise AssetError(f"{url}: HTTP {response.status} {response.reason}")
            body = await response.content.read(MAX_LIST_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AssetError(f"{url}: {exc or type(exc).__name__}") from None
    if len(body) > MAX_LIST_BYTES:
        raise AssetError(f"{url}: larger than {MAX_LIST_BYTES} bytes, not a checksum list")
    return body.decode("utf-8", errors="replace")


def _resume_start(response: aiohttp.ClientResponse, offset: int) -> int:
    """Where the body of a 206 starts; -1 when it does not continue at `offset`."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    return int(match[1]) if match and int(match[1]) == offset else -1


def _request_headers(offset: int, meta: dict[str, str]) -> dict[str, str]:
    """The GET headers: no compression; from `offset` on, a Range that holds only if unchanged."""
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        etag = meta.get("etag", "")
        # If-Range takes only a strong validator (RFC 9110 13.1.5): never a W/ ETag.
        validator = etag if etag and not etag.startswith("W/") else meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    return headers


@dataclass(frozen=True)
class _Received:
    """What one GET wrote into the `.part` file."""

    size: int
    """The part's size now."""
    total: int | None
    """The size the server announced (kept bytes included), if it did."""
    digest: hashlib._Hash
    """SHA-256 state over the whole part."""
    resumed: int
    """Bytes kept from before."""


async def _fetch_once(
    session: aiohttp.ClientSession,
    url: str,
    part: Path,
    sha256: str,
    offset: int,
    meta: dict[str, str],
    progress: Progress | None,
) -> Downloaded | _Received | None:
    """One GET: Downloaded if the part was already whole, what came, or None to start over."""
    try:
        async with session.get(url, headers=_request_headers(offset, meta)) as response:
            if response.status == 416 and offset:
                # Nothing after `offset`: the part may already be whole; its hash decides.
                digest = await asyncio.to_thread(hash_file, part)
                if digest.hexdigest() == sha256:
                    return Downloaded(url, part, offset, sha256, offset)
                _discard(part)
                return None
            if response.status == 206 and offset and _resume_start(response, offset) == offset:
                digest = await asyncio.to_thread(hash_file, part)
                mode, resumed = "ab", offset
            elif response.status == 206:  # a range we did not ask for: start over
                _discard(part)
                return None
            elif response.status == 200:
                digest, mode, resumed = hashlib.sha256(), "wb", 0
            else:
                raise AssetError(f"{url}: HTTP {response.status} {response.reason}")
            _write_meta(part, url, response)
            length = response.content_length
            total = resumed + length if length is not None else None
            size = await _receive(response, part, mode, resumed, total, digest, progress)
            return _Received(size, total, digest, resumed)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        have = part.stat().st_size if part.exists() else 0
        if progress and progress.active:
            progress.finish(f"interrupted at {have} bytes")
        raise AssetError(
            f"{url}: download interrupted at {have} bytes ({exc or type(exc).__name__}); "
            f"run again to resume from {part}"
        ) from None


def _verified(
    url: str, part: Path, sha256: str, got: _Received, progress: Progress | None
) -> Downloaded:
    """The download if it is whole and matches sha256; else AssetError (the part goes on mismatch)."""
    if got.total is not None and got.size != got.total:
        raise AssetError(f"{url}: got {got.size} bytes, the server announced {got.total}")
    digest = got.digest.hexdigest()
    if digest != sha256:
        _discard(part)
        if progress:
            progress.finish("SHA-256 MISMATCH")
        raise AssetError(
            f"{url}: SHA-256 mismatch: the published list says {sha256}, the download is "
            f"{digest}; nothing was cached and the partial file was removed"
        )
    if progress:
        progress.finish(f"{human_bytes(got.size)} ({got.size} bytes), SHA-256 verified")
    return Downloaded(url, part, got.size, digest, got.resumed)


async def download(
    session: aiohttp.ClientSession,
    url: str,
    part: Path,
    sha256: str,
    progress: Progress | None = None,
) -> Downloaded:
    """Fetch url into part, resuming what is there; AssetError if it fails or does not match.

    On a checksum mismatch the `.part` is removed (resuming it could never fix it); when the
    transfer breaks it is kept, with its validators, for the next run to resume.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    meta = _read_meta(part)
    offset = part.stat().st_size if part.exists() else 0
    if offset and meta.get("url") != url:
        _discard(part)
        offset = 0
    for _attempt in range(2):
        got = await _fetch_once(session, url, part, sha256, offset, meta, progress)
        if isinstance(got, Downloaded):
            return got
        if got is not None:
            return _verified(url, part, sha256, got, progress)
        offset, meta = 0, {}
    raise AssetError(f"{url}: the server's answers to Range requests make no sense; giving up")


async def _receive(
    response: aiohttp.ClientResponse,
    part: Path,
    mode: str,
    done: int,
    total: int | None,
    digest: hashlib._Hash,
    progress: Progress | None,
) -> int:
    """Append the body to part (or overwrite it) while hashing; returns the part's size."""
    if progress:
        progress.start(part.name.removesuffix(".part"), total, done)
    with part.open(mode) as out:
        async for block in response.content.iter_chunked(CHUNK):
            out.write(block)
            digest.update(block)
            done += len(block)
            if progress:
                progress.advance(len(block))
        out.flush()
    return done

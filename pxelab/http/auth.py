"""Who may change what, as pure functions: API tokens, signed install callbacks, origins, paths.

No I/O here: the HTTP guard (`pxelab.http.guard`) and the CLI feed these values from the store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from pxelab.state import TokenRecord

TOKEN_PREFIX = "pxl_"
"""Every token starts with this, so a leaked one is easy to recognise (and to grep for)."""
SIGNATURE_HEX = 32
"""Hex digits of the install callback signature kept: 128 bits of HMAC-SHA256."""
SIGNED_CALLBACK = "signed callback"
"""The audit trail's `who` for a host that reported its install with a valid signature."""
BOOT_PATHS: tuple[str, ...] = ("/boot", "/ipxe", "/boot.ipxe", "/images/", "/tftp/")
BOOT_PATHS += ("/cloud-init/", "/kickstart/", "/preseed/")
"""What machines fetch while they boot and install: never behind a token."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that change something; everything else only reads."""
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_CALLBACK = re.compile(r"([0-9]{1,9})\.([0-9a-f]*)")


class ApiAuth(StrEnum):
    """What needs a token (`api_auth`)."""

    WRITES = "writes"
    """Every state-changing request; reads stay open."""
    ALL = "all"
    """Also /api/*, /metrics and the status page (boot paths never)."""


def new_token() -> str:
    """A fresh API token: the prefix and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_token_name(name: str) -> str:
    """A token's name, or ValueError: letters, digits, `.`, `_`, `-`, at most 63."""
    if not _TOKEN_NAME.fullmatch(name):
        raise ValueError(
            f"token name {name[:70]!r}: use letters, digits, '.', '_' or '-' (at most 63)"
        )
    return name


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def match_token(token: str, records: Iterable[TokenRecord]) -> TokenRecord | None:
    """The stored token a presented one is, comparing digests in constant time (every record
    is compared, so the time says nothing about which one matched or how far)."""
    digest = token_digest(token)
    found = None
    for record in records:
        if hmac.compare_digest(digest, record.digest) and found is None:
            found = record
    return found


def callback_signature(secret: bytes, mac: str, generation: int) -> str:
    """HMAC-SHA256 over the MAC and the install generation, as SIGNATURE_HEX hex digits."""
    message = f"pxelab-installed\n{mac.lower()}\n{generation}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:SIGNATURE_HEX]


def callback_credential(secret: bytes, mac: str, generation: int) -> str:
    """The last path segment of a signed install callback: `<generation>.<signature>`.

    Only digits, a dot and hex: safe on an iPXE kernel line, in YAML, a shell or a preseed."""
    return f"{generation}.{callback_signature(secret, mac, generation)}"


def verify_callback(secret: bytes, mac: str, generation: int, credential: str) -> str | None:
    """None when credential is the valid signed callback of mac at its current generation;
    otherwise why not (for the 403 and the audit trail)."""
    found = _CALLBACK.fullmatch(credential)
    if found is None:
        return "malformed signature"
    claimed, signature = int(found.group(1)), found.group(2)
    if not signature:
        return "missing signature"
    expected = callback_signature(secret, mac, claimed)
    if not hmac.compare_digest(signature, expected):
        return "bad signature (tampered, or another host's)"
    if claimed != generation:
        return f"signature of install generation {claimed}, the host is at {generation} (replay)"
    return None


def same_origin(origin: str | None, host: str) -> bool:
    """Whether a browser's Origin header names this server (host[:port] as the client reached
    it); a request without Origin (curl, scripts) is not a cross-origin browser request."""
    if origin is None:
        return True
    if origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def is_boot_path(path: str) -> bool:
    """A path machines fetch while they boot (never behind a token)."""
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in BOOT_PATHS)


def read_needs_auth(path: str, api_auth: ApiAuth) -> bool:
    """Whether a read (GET, HEAD) of path needs a token or a session: only with `all`, and
    never the boot paths or the sign-in page and the page's own CSS, JS and icon."""
    if api_auth is ApiAuth.WRITES or is_boot_path(path):
        return False
    return path not in ("/status/signin", "/status/favicon.svg") and not path.startswith(
        "/status/status."
    )


SESSION_SECONDS = 12 * 3600
"""A status-page sign-in lasts this long (or until sign-out, or the token is revoked)."""
SESSIONS_KEPT = 1000
"""Sessions kept at most; the oldest is dropped first."""


@dataclass(frozen=True)
class Session:
    """A status-page sign-in: which token signed in, and the CSRF token of its forms."""

    token_name: str
    """The name of the token that signed in (the audit trail's `who`)."""
    token_digest: str
    """That token's digest: a revoked token's sessions act no more."""
    csrf: str
    """Random value every form of the page carries; checked in constant time."""
    expires: float
    """Wall-clock time after which the session is gone."""


class Sessions:
    """Status-page sessions by their random cookie value, in memory (a restart signs out)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def create(self, record: TokenRecord, now: float) -> tuple[str, Session]:
        """A new session for the token; returns the cookie value and the session."""
        while len(self._by_id) >= SESSIONS_KEPT:
            del self._by_id[next(iter(self._by_id))]
        sid = secrets.token_urlsafe(32)
        session = Session(
            record.name, record.digest, secrets.token_urlsafe(24), now + SESSION_SECONDS
        )
        self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None, now: float) -> Session | None:
        """The live session of a cookie value; None for none, unknown or expired."""
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is not None and session.expires <= now:
            del self._by_id[sid]
            return None
        return session

    def drop(self, sid: str | None) -> None:
        """Sign out."""
        if sid:
            self._by_id.pop(sid, None)


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether a form carries the session's CSRF token (constant-time compare)."""
    return presented is not None and hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), session.csrf.encode()
    )

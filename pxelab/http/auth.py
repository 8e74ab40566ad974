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

from pxelab.state import SESSIONS_KEPT, Change, SessionRecord, TokenRecord

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
CACHE_SECONDS = 1.0
"""How long an instance trusts a session it read from the store. Sign-out and revocation reach
it at once when the store tells (its own, or PostgreSQL's NOTIFY), and within this otherwise."""
CSRF_HEX = 32
"""Hex digits of a session's CSRF token kept: 128 bits of HMAC-SHA256."""


@dataclass(frozen=True)
class Session:
    """A live status-page sign-in: which token signed in, and the CSRF token of its forms."""

    token_name: str
    """The name of the token that signed in (the audit trail's `who`)."""
    digest: str
    """SHA-256 of the session id (the cookie): its key in the store."""
    csrf: str
    """The value every form of the page carries (`session_csrf`); checked in constant time."""
    expires: float
    """Wall-clock time after which the session is gone."""


def new_session_id() -> str:
    """A fresh session id (the cookie's value): 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def session_csrf(secret: bytes, sid: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 of its id under the server secret, so every
    instance sharing the store derives the same one and the store keeps nothing but the id's hash
    (the stored digest does not give it: it needs the id itself)."""
    message = f"pxelab-csrf\n{sid}".encode("utf-8", "surrogateescape")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:CSRF_HEX]


class SessionCache:
    """Sessions this instance read from the store, trusted for CACHE_SECONDS (monotonic clock)
    so that the page's requests seldom reach the store; an end the store tells of drops one."""

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = SESSIONS_KEPT) -> None:
        self.seconds, self.size = seconds, size
        self._by_digest: dict[str, tuple[SessionRecord, float]] = {}
        self.epoch = 0
        """Counts the ends told: a lookup that began before one is not cached (`put`)."""

    def get(self, digest: str, now: float, tick: float) -> SessionRecord | None:
        """The cached live session; None when not cached, stale (read before tick - seconds)
        or expired (now, wall clock)."""
        found = self._by_digest.get(digest)
        if found is None:
            return None
        record, read_at = found
        if record.expires <= now or tick - read_at >= self.seconds:
            del self._by_digest[digest]
            return None
        return record

    def put(self, record: SessionRecord, tick: float, epoch: int) -> None:
        """Remember a session read at tick by a lookup that began at epoch (ignored when an end
        was told meanwhile: what was read may be the ended session)."""
        if epoch != self.epoch:
            return
        self._by_digest.pop(record.digest, None)
        while len(self._by_digest) >= self.size:
            del self._by_digest[next(iter(self._by_digest))]
        self._by_digest[record.digest] = (record, tick)

    def on_change(self, change: Change) -> None:
        """A store listener: a session ended, or a token changed (its sessions may have ended)."""
        if change.kind == "session":
            self.epoch += 1
            self._by_digest.pop(change.key, None)
        elif change.kind == "token":
            self.epoch += 1
            for digest, (record, _) in list(self._by_digest.items()):
                if record.token_name == change.key:
                    del self._by_digest[digest]


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether a form carries the session's CSRF token (constant-time compare)."""
    return presented is not None and hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), session.csrf.encode()
    )

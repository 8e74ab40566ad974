"""The daemon's control-plane wiring: the state store behind the guard, and the TLS context.

Every failure here is a ConfigError with one line naming the key and the file, before serving.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pxelab.app.config import Config
from pxelab.errors import ConfigError
from pxelab.http.auth import ApiAuth
from pxelab.http.guard import Guard
from pxelab.state import StateStore, StoreError
from pxelab.state.base import public_url
from pxelab.state.open import open_store


async def open_state(config: Config) -> StateStore:
    """The opened state store of config (SQLite in state_dir, or state_url)."""
    store = open_store(config)
    try:
        await store.open()
    except StoreError as exc:
        raise ConfigError(f"key {store_key(config)!r}: {exc}") from None
    return store


def store_key(config: Config) -> str:
    """The setting that chose the state store, for error messages."""
    return "state_url" if config.state_url else "state_dir"


def store_place(config: Config) -> str:
    """Where the state is, for the ready line: the database URL without its password, or the
    SQLite file."""
    return public_url(config.state_url) if config.state_url else str(config.state_dir)


def make_guard(config: Config, store: StateStore) -> Guard:
    """The guard of the HTTP app: tokens, audit and secret in store, the config's policy."""
    return Guard(store, ApiAuth(config.api_auth), https_only=config.api_https_only)


def _pem(key: str, path: Path, marker: str, what: str) -> None:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(f"key {key!r}: cannot read {path}: {exc.strerror or exc}") from None
    if marker not in text:
        raise ConfigError(f"key {key!r}: {path} is not a PEM {what} (no '{marker}' line)")
    if "ENCRYPTED" in text and key == "tls_key":
        raise ConfigError(
            f"key {key!r}: {path} is encrypted; pxelab reads unencrypted keys only "
            "(keep it readable by pxelab alone; `openssl pkey -in KEY -out PLAIN` decrypts it)"
        )


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The server TLS context of tls_cert and tls_key; None when HTTPS is not configured."""
    cert, key = config.tls_cert, config.tls_key
    if cert is None or key is None:
        return None
    _pem("tls_cert", cert, "-----BEGIN CERTIFICATE-----", "certificate")
    _pem("tls_key", key, "PRIVATE KEY-----", "private key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_password() -> str:
        raise ConfigError(f"key 'tls_key': {key} needs a password; use an unencrypted key")

    try:
        context.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigError(f"key 'tls_key': {key} is not the private key of {cert}") from None
        raise ConfigError(
            f"keys 'tls_cert', 'tls_key': cannot load {cert} with {key}: {exc.reason or exc}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"keys 'tls_cert', 'tls_key': cannot read them: {exc}") from None
    return context

"""Open the state store the settings choose: PostgreSQL for a `state_url`, else SQLite."""

from __future__ import annotations

from pxelab.app.config import Config
from pxelab.state import StateStore


def open_store(config: Config, instance: str | None = None) -> StateStore:
    """The store the settings choose: PostgreSQL for a `state_url`, else SQLite in `state_dir`.
    Not opened yet: the caller awaits `open()` (StoreError with one clear line)."""
    if config.state_url:
        from pxelab.state.postgres import PostgresStore

        return PostgresStore(config.state_url, instance=instance)
    from pxelab.state.sqlite import FILE_NAME, SqliteStore

    return SqliteStore(config.state_dir / FILE_NAME, instance=instance, legacy_dir=config.state_dir)

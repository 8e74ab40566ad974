"""The two StateStore backends for parametrized tests: SQLite in a temp dir, PostgreSQL per test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pxelab.state import StateStore
from pxelab.testing.postgres import PostgresCluster


@dataclass
class Backend:
    """Makes (unopened) stores on one database: SQLite file or PostgreSQL database."""

    kind: str
    """`sqlite` or `postgres`."""
    state_dir: Path
    """The SQLite state_dir (also a scratch dir for postgres tests)."""
    url: str = ""
    """The PostgreSQL database's URL."""
    cluster: PostgresCluster | None = None
    """The PostgreSQL cluster (restartable)."""

    def make(self, instance: str | None = None) -> StateStore:
        if self.kind == "sqlite":
            from pxelab.state.sqlite import FILE_NAME, SqliteStore

            return SqliteStore(
                self.state_dir / FILE_NAME,
                instance=instance,
                legacy_dir=self.state_dir,
                poll_interval=0.1,
            )
        from pxelab.state.postgres import PostgresStore

        return PostgresStore(self.url, instance=instance)

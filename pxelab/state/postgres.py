"""The shared backend on PostgreSQL (work in progress: the next commit brings it)."""

from __future__ import annotations

from pxelab.state import StoreError
from pxelab.state.sqlite import SqliteStore


class PostgresStore(SqliteStore):
    """Placeholder: refuses to open until the PostgreSQL backend lands."""

    def __init__(self, url: str, *, instance: str | None = None) -> None:
        from pathlib import Path

        super().__init__(Path("/nonexistent"), instance=instance)
        self.url = url

    async def open(self) -> None:
        raise StoreError(f"{self.url}: the PostgreSQL backend is not there yet")

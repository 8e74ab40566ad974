"""Fixtures shared by the test layers: a throwaway PostgreSQL cluster (session-scoped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pxelab.testing.postgres import PostgresCluster, postgres_cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """Debian's PostgreSQL on a Unix socket in a temp dir, for the whole session."""
    with postgres_cluster() as cluster:
        yield cluster

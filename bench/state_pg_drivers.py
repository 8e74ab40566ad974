"""asyncpg against psycopg 3 (async) on the state store's hot statements, on a throwaway cluster.

Run (root or not): `.venv/bin/python bench/state_pg_drivers.py [--n 2000] [--repeat 3]`.
psycopg is not a pxelab dependency: install it beside (e.g. `pip install --target DIR
'psycopg[binary]'` and PYTHONPATH=DIR), or the script measures asyncpg alone.
Per driver, one connection on the Unix socket, autocommit: N single-row lease upserts (the
store's `INSERT … ON CONFLICT (ip) DO UPDATE … WHERE … RETURNING`), N selects by address, and
N upserts from 8 tasks on 4 connections. Prints microseconds per statement, wall clock and the client's CPU (median of --repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pxelab.testing.postgres import postgres_cluster

SCHEMA = """
CREATE TABLE leases (ip bigint PRIMARY KEY, mac text NOT NULL, state text NOT NULL,
                     expires double precision NOT NULL, instance text NOT NULL DEFAULT '')
"""
UPSERT = """
INSERT INTO leases (ip, mac, state, expires, instance) VALUES ({0}, {1}, 'bound', {2}, 'bench')
ON CONFLICT (ip) DO UPDATE SET mac = EXCLUDED.mac, expires = EXCLUDED.expires
WHERE leases.mac = EXCLUDED.mac OR leases.expires <= {3}
RETURNING ip
"""
SELECT = "SELECT ip, mac, state, expires FROM leases WHERE ip = {0}"


class Asyncpg:
    name = "asyncpg"

    async def connect(self, url: str) -> Any:
        import asyncpg

        return await asyncpg.connect(url)

    async def upsert(self, conn: Any, i: int) -> None:
        await conn.fetchval(UPSERT.format("$1", "$2", "$3", "$4"), i, f"m{i}", 1e9, 0.0)

    async def select(self, conn: Any, i: int) -> None:
        await conn.fetchrow(SELECT.format("$1"), i)

    async def close(self, conn: Any) -> None:
        await conn.close()


class Psycopg:
    name = "psycopg 3 async"

    async def connect(self, url: str) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def upsert(self, conn: Any, i: int) -> None:
        cur = await conn.execute(UPSERT.format("%s", "%s", "%s", "%s"), (i, f"m{i}", 1e9, 0.0))
        await cur.fetchone()

    async def select(self, conn: Any, i: int) -> None:
        cur = await conn.execute(SELECT.format("%s"), (i,))
        await cur.fetchone()

    async def close(self, conn: Any) -> None:
        await conn.close()


async def timed(n: int, step: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """Wall-clock and client CPU microseconds per call."""
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await step(i)
    return (time.perf_counter() - start) / n * 1e6, (time.process_time() - cpu) / n * 1e6


async def concurrent(driver: Any, url: str, n: int, conns: int = 4, tasks: int = 8) -> float:
    pool = [await driver.connect(url) for _ in range(conns)]
    locks = [asyncio.Lock() for _ in pool]

    async def worker(t: int) -> None:
        for i in range(t, n, tasks):
            k = i % conns
            async with locks[k]:
                await driver.upsert(pool[k], 100_000 + i)

    start = time.perf_counter()
    await asyncio.gather(*(worker(t) for t in range(tasks)))
    elapsed = (time.perf_counter() - start) / n * 1e6
    for conn in pool:
        await driver.close(conn)
    return elapsed


async def run(url: str, n: int, repeat: int) -> None:
    drivers: list[Any] = [Asyncpg()]
    try:
        import psycopg  # noqa: F401

        drivers.append(Psycopg())
    except ImportError:
        print("psycopg is not importable: measuring asyncpg alone")
    columns = ["upsert µs", "upsert CPU", "select µs", "select CPU", "8 tasks/4 conns µs"]
    print(f"{'driver':16}" + "".join(f"{c:>20}" for c in columns))
    for driver in drivers:
        results: dict[str, list[float]] = {c: [] for c in columns}
        for _ in range(repeat):
            conn = await driver.connect(url)
            await conn.execute("TRUNCATE leases")
            for kind, step in (("upsert", driver.upsert), ("select", driver.select)):
                wall, cpu = await timed(n, lambda i, step=step, conn=conn: step(conn, i))
                results[f"{kind} µs"].append(wall)
                results[f"{kind} CPU"].append(cpu)
            await driver.close(conn)
            results[columns[-1]].append(await concurrent(driver, url, n))
        print(
            f"{driver.name:16}" + "".join(f"{statistics.median(results[c]):20.0f}" for c in columns)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with postgres_cluster() as cluster:
        url = cluster.create_database()
        cluster.psql(SCHEMA, "test1")
        asyncio.run(run(url, args.n, args.repeat))


if __name__ == "__main__":
    main()

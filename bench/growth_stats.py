"""What a W1 round cost the database, per task, from PostgreSQL's own counters (for
bench/growth.py): WAL bytes and full-page images (pg_stat_wal: the cluster's, so the rounds
run one at a time), shared-buffer reads and hits of the round's database (pg_stat_database),
the indexes it read from outside the buffer pool (pg_statio_user_indexes), and, when the
cluster preloads pg_stat_statements, the statements that took the most time (nested ones
too with `pg_stat_statements.track = all`). Steadier than the throughput on a shared machine:
a page read or a full-page image is counted, not timed."""

import asyncio
import time
from typing import Any

import asyncpg

WAL = "SELECT wal_bytes::float8 AS wal_bytes, wal_fpi::float8 AS wal_fpi FROM pg_stat_wal"
DATABASE = """
SELECT blks_read::float8 AS blks_read, blks_hit::float8 AS blks_hit
FROM pg_stat_database WHERE datname = current_database()
"""
INDEXES = "SELECT indexrelname AS name, idx_blks_read::float8 AS n FROM pg_statio_user_indexes"
STATEMENTS = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query, calls,
       total_exec_time / calls AS mean_ms, shared_blks_read::float8 / calls AS read,
       shared_blks_hit::float8 / calls AS hit, wal_fpi::float8 / calls AS fpi
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls > 0
ORDER BY total_exec_time DESC LIMIT $1
"""


async def has_statements(dsn: str) -> bool:
    """Whether pg_stat_statements is loaded; if so, its view is made in this database."""
    conn = await asyncpg.connect(dsn)
    try:
        loaded = await conn.fetchval("SHOW shared_preload_libraries")
        if "pg_stat_statements" not in loaded:
            return False
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return True
    finally:
        await conn.close()


async def _snapshot(dsn: str, statements: bool) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        wal, db = await conn.fetchrow(WAL), await conn.fetchrow(DATABASE)
        assert wal is not None
        assert db is not None
        indexes = {r["name"]: r["n"] for r in await conn.fetch(INDEXES)}
        if statements:  # this database's only: the round about to run starts from zero
            await conn.execute(
                "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
                " WHERE datname = current_database()), 0)"
            )
        return {**dict(wal), **dict(db), "indexes": indexes}
    finally:
        await conn.close()


def snapshot(dsn: str, statements: bool) -> dict[str, Any]:
    """The counters now (and pg_stat_statements of this database reset, when asked)."""
    return asyncio.run(_snapshot(dsn, statements))


async def _top(dsn: str, limit: int) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(STATEMENTS, limit)
    finally:
        await conn.close()
    return [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def per_task(dsn: str, before: dict[str, Any], n: int, statements: bool) -> dict[str, Any]:
    """The counters' growth since `before`, a task; the indexes read most; the top statements.

    Backends report their counters at most once a second: read them after that."""
    time.sleep(1.5)
    after = asyncio.run(_snapshot(dsn, False))
    out: dict[str, Any] = {
        k: round((after[k] - before[k]) / n, 2)
        for k in ("wal_bytes", "wal_fpi", "blks_read", "blks_hit")
    }
    grew = {k: (v - before["indexes"].get(k, 0.0)) / n for k, v in after["indexes"].items()}
    out["index_reads"] = {k: round(v, 2) for k, v in sorted(grew.items(), key=lambda kv: -kv[1])
                          [:6] if v > 0.005}  # fmt: skip
    if statements:
        out["statements"] = asyncio.run(_top(dsn, 8))
    return out

"""The reconciler's cost on a large table (`make bench-reconcile`).

A private database gets `--rows` task rows, all but `--unfinished` of them finished (the
shape of months of history), then the reconciler's passes are timed: in a steady state
(nothing to repair) and with `--lost` queued tasks whose messages were lost. The plans of the
pass's statements (auto_explain, as notices) show which index serves each. One JSON line of
figures on stdout, the plans on stderr.

    python bench/reconcile.py [--rows 1000000] [--unfinished 10000] [--lost 1000] [--passes 20]
"""

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import structlog

from taskfleet.broker.topology import delete_namespace
from taskfleet.core.settings import Settings
from taskfleet.runtime.kernel import open_kernel
from taskfleet.runtime.reconciler import Reconciler
from taskfleet.store.migrate import migrate
from taskfleet.store.pool import drop_database, with_database

# Finished tasks, and unfinished ones in every state the reconciler reads, none due for repair
# (fresh, or held by a live worker). All one statement each: 1M rows in about a minute.
FILL = """
INSERT INTO tasks (id, type, user_id, chat_id, status, input, attempts, max_attempts,
                   created_at, updated_at, completed_at)
SELECT gen_random_uuid(), 'chat_message', 'u' || (g % 5000), 'c' || (g % 50000), 'completed',
       '{"content": "hello"}', 1, 5, at, at, at
FROM generate_series(1, $1) AS g, LATERAL (SELECT now() - make_interval(secs => g) AS at) t
"""
UNFINISHED = """
INSERT INTO tasks (id, type, user_id, chat_id, status, input, attempts, max_attempts, holder,
                   deadline_at, updated_at)
SELECT gen_random_uuid(), 'chat_message', 'u' || (g % 5000), 'c' || g,
       (ARRAY['queued', 'processing', 'waiting', 'retrying'])[1 + g % 4], '{}', 1, 5, $2,
       now() + interval '1 hour', now()
FROM generate_series(1, $1) AS g
"""
LOST = """
INSERT INTO tasks (id, type, user_id, chat_id, status, input, max_attempts, updated_at)
SELECT gen_random_uuid(), 'chat_message', 'lost' || g, 'c', 'queued', '{}', 5,
       now() - interval '1 hour'
FROM generate_series(1, $1) AS g
"""


async def fill(dsn: str, rows: int, unfinished: int) -> uuid.UUID:
    conn = await asyncpg.connect(dsn)  # the login role, not the kernel's: no row security
    holder = uuid.uuid4()
    try:
        await conn.execute(
            "INSERT INTO workers (id, worker, queue, host, pid, version, concurrency,"
            " heartbeat_s) VALUES ($1, 'chat', 'chat_tasks', 'bench', 1, 'bench', 1, 3600)",
            holder,
        )
        started = time.monotonic()
        await conn.execute(FILL, rows - unfinished)
        await conn.execute(UNFINISHED, unfinished, holder)
        await conn.execute("ANALYZE tasks")
        print(f"filled {rows} rows in {time.monotonic() - started:.1f}s", file=sys.stderr)
    finally:
        await conn.close()
    return holder


async def lose(dsn: str, lost: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(LOST, lost)
    finally:
        await conn.close()


async def timed_passes(reconciler: Reconciler, passes: int) -> list[float]:
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        await reconciler.reconcile_once()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def plans(dsn: str) -> None:
    """The plans of one pass's statements, printed by auto_explain as notices."""
    conn = await asyncpg.connect(dsn)
    conn.add_log_listener(lambda _c, message: print(message.message, file=sys.stderr))
    try:
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
            " SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;"
            " SET auto_explain.log_buffers = on; SET auto_explain.log_level = notice;"
            " SET client_min_messages = notice"
        )
        async with conn.transaction():
            await conn.fetch("SELECT * FROM tf_reconcile_lost(60, '{}', 600, 500)")
            await conn.fetch("SELECT * FROM tf_reconcile_waiting(60, 500)")
            await conn.fetch("SELECT * FROM tf_reconcile_running(true, 60, 500)")
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()


class _Rollback(Exception):
    """Leave the table as it was: the plans only."""


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 2),
            "max_ms": round(ordered[-1], 2)}  # fmt: skip


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    base = Settings()
    dsn = with_database(base.database_url, f"taskfleet_bench_reconcile_{tag}")
    settings = base.model_copy(
        update={"database_url": dsn, "namespace": f"br{tag}", "reconcile_interval_s": 0.0}
    )
    await migrate(dsn)
    try:
        await fill(dsn, args.rows, args.unfinished)
        async with open_kernel(settings, name="bench-reconcile", relay=False) as kernel:
            reconciler = Reconciler(kernel.pool, kernel.broker, settings)
            reconciler._reachable_since = 0.0  # trust the registry: this is not after an outage
            steady = await timed_passes(reconciler, args.passes)
            await lose(dsn, args.lost)
            started = time.perf_counter()
            repaired = 0
            while (counts := await reconciler.reconcile_once()) and counts.get("lost_message"):
                repaired += counts["lost_message"]
            repair_ms = (time.perf_counter() - started) * 1000
        await plans(dsn)
    finally:
        await delete_namespace(settings)
        await drop_database(dsn)
    return {
        "rows": args.rows,
        "unfinished": args.unfinished,
        "steady": summary(steady),
        "lost": args.lost,
        "repaired": repaired,
        "repair_ms": round(repair_ms, 1),
    }


if __name__ == "__main__":
    # One log line per repair is for operators; here only the figures and the plans matter.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--unfinished", type=int, default=10_000)
    parser.add_argument("--lost", type=int, default=1_000)
    parser.add_argument("--passes", type=int, default=20)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))

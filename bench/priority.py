"""`make bench-priority`: the wait of high tasks behind a backlog of normal ones.

A private fleet (the API; one chat worker with its default slots, scripted provider) on its
own database and namespace. With no worker running, N normal chat tasks (default 20,000) are
submitted through `POST /api/batches` (one statement a batch); then the worker starts and,
from its first claim until it has drained the backlog, one high chat task a `--every` seconds
is submitted through `POST /api/chat/stream`. Tasks belong to 50 users of each kind, as in
W1 (a user runs at most USER_CONCURRENCY tasks at once). From the task rows: the wait
(started_at - created_at) p50/p99 of each level, and the drain's throughput (N / (last
completed_at - the first claim)). One JSON line on stdout.

    python bench/priority.py [--n 20000] [--every 0.1]
"""

import argparse
import asyncio
import contextlib
import json
import os
import time
from typing import Any

import aiohttp
import asyncpg
from run import cli, start_fleet, stop_fleet  # bench/run.py

from taskfleet.security.auth import issue_token

BATCH = 500  # BATCH_MAX_MEMBERS
# Many users, as in W1: a user runs at most USER_CONCURRENCY tasks at once (more are put back).
USERS = 50

_WAITS = """
SELECT priority, count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))
         * 1000 AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at))
         * 1000 AS p99_ms,
       max(extract(epoch FROM started_at - created_at)) * 1000 AS max_ms,
       count(*) FILTER (WHERE status = 'completed') AS completed
FROM tasks GROUP BY priority ORDER BY priority
"""


async def submit_backlog(session: aiohttp.ClientSession, url: str, n: int) -> None:
    """N normal chat tasks, BATCH at a time, a few batches in flight."""
    sizes = [min(BATCH, n - i) for i in range(0, n, BATCH)]
    room = asyncio.Semaphore(4)

    async def one(size: int, k: int) -> None:
        async with room:
            tasks = [{"chat_id": f"b{k}-{j % 50}", "content": "hello"} for j in range(size)]
            body = {"tasks": tasks, "user_id": f"normal-{k % USERS}"}
            async with session.post(f"{url}/api/batches", json=body) as resp:
                if resp.status != 202:
                    raise SystemExit(f"bench: batch refused: {resp.status} {await resp.text()}")

    await asyncio.gather(*(one(size, k) for k, size in enumerate(sizes)))


async def trickle(
    session: aiohttp.ClientSession, url: str, every_s: float, stop: asyncio.Event
) -> int:
    """One high task every `every_s` until `stop`; how many."""
    sent = 0
    while not stop.is_set():
        body = {"chat_id": "h", "content": "urgent", "priority": "high",
                "user_id": f"paid-{sent % USERS}"}  # fmt: skip
        async with session.post(f"{url}/api/chat/stream", json=body) as resp:
            if resp.status != 202:
                raise SystemExit(f"bench: high task refused: {resp.status} {await resp.text()}")
        sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    return sent


async def drained(pool: asyncpg.Pool, n: int, stop: asyncio.Event) -> None:
    """Set `stop` once the whole normal backlog is completed."""
    while True:
        done = await pool.fetchval(
            "SELECT count(*) FROM tasks WHERE priority = 'normal' AND status = 'completed'"
        )
        if done >= n:
            stop.set()
            return
        await asyncio.sleep(0.5)


async def measure(env: dict[str, str], url: str, n: int, every_s: float) -> dict[str, Any]:
    token = issue_token(env["TASKFLEET_JWT_SECRET"], "bench", scope="service")
    headers = {"Authorization": f"Bearer {token}"}
    pool = await asyncpg.create_pool(env["DATABASE_URL"], min_size=1, max_size=2)
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            started = time.monotonic()
            await submit_backlog(session, url, n)
            submit_s = time.monotonic() - started
            worker = await asyncio.create_subprocess_exec(
                *cli(env), "worker", "chat", env=env, stdout=asyncio.subprocess.DEVNULL
            )
            try:
                began = await first_claim(pool)  # the worker is consuming: the drain began
                stop = asyncio.Event()
                watcher = asyncio.create_task(drained(pool, n, stop))
                highs = await trickle(session, url, every_s, stop)
                await watcher
                await wait_all_done(pool)
            finally:
                worker.terminate()
                await asyncio.wait_for(worker.wait(), 60)
        waits = {r["priority"]: _figures(r) for r in await pool.fetch(_WAITS)}
        last = await pool.fetchval("SELECT max(completed_at) FROM tasks WHERE priority = 'normal'")
    finally:
        await pool.close()
    return {"n": n, "high_tasks": highs, "every_s": every_s, "backlog_submit_s": round(submit_s, 1),
            "drain_throughput": round(n / (last - began).total_seconds(), 1),
            "wait": waits}  # fmt: skip


async def first_claim(pool: asyncpg.Pool) -> Any:
    """When the worker claimed its first task (once it has)."""
    while True:
        began = await pool.fetchval("SELECT min(started_at) FROM tasks")
        if began is not None:
            return began
        await asyncio.sleep(0.1)


async def wait_all_done(pool: asyncpg.Pool) -> None:
    while True:
        if not await pool.fetchval("SELECT count(*) FROM tasks WHERE status <> 'completed'"):
            return
        await asyncio.sleep(0.2)


def _figures(row: asyncpg.Record) -> dict[str, Any]:
    return {k: (round(float(row[k]), 1) if k.endswith("_ms") else int(row[k]))
            for k in ("n", "completed", "p50_ms", "p99_ms", "max_ms")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", 20000)))
    parser.add_argument("--every", type=float, default=0.1, help="seconds between high tasks")
    args = parser.parse_args()
    quotas = {"SUBMIT_RATE_PER_MIN": str(10 * args.n), "MAX_QUEUED_PER_USER": str(2 * args.n)}
    fleet = start_fleet(0, None, extra_env=quotas)
    try:
        figures = asyncio.run(measure(fleet.env, fleet.url, args.n, args.every))
        print(json.dumps(figures), flush=True)
    finally:
        stop_fleet(fleet)


if __name__ == "__main__":
    main()

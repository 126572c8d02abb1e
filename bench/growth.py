"""`make bench-growth`: W1's cost as the history grows. Two fleets side by side (an API and a
chat worker each), one on an empty database, one on a database pre-filled with `--tasks`
finished chat tasks and their two messages each (spread over the last 30 days, the shape of a
month of history); then

1. W1 in rounds alternated between the two: throughput and latency medians, and their ratio;
2. the plans of the claim (with the chat context it preloads) and the completion on the grown
   database (auto_explain, nested statements), and any sequential scan of a large table in them;
3. retention (`taskfleet cleanup --older-than 7d`, batches of 500) deleting on the grown
   database while W1 runs, in rounds alternated with W1 alone: rows deleted a second, and W1's
   ratio with and without it.

One JSON line per round, then one of figures; the plans on stderr.

    python bench/growth.py [--tasks 1000000] [--n 3000] [--rounds 3] [--via amqp]
"""

import argparse
import asyncio
import json
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
from run import Fleet, cli, run_bench, start_fleet, stop_fleet  # bench/run.py

# Finished chat tasks and their user and assistant messages, each in one statement; the
# chats (`hist…`) and users (`u…`) are apart from W1's (`bench-…`).
FILL_TASKS = """
INSERT INTO tasks (id, type, user_id, chat_id, status, input, output, progress, attempts,
                   max_attempts, fence, created_at, started_at, updated_at, completed_at)
SELECT gen_random_uuid(), 'chat_message', 'u' || (g % 5000), 'hist' || (g % 100000),
       'completed', '{"content": "hello there"}', '{"reply": "You said: hello there"}', 1, 1, 5,
       1, at, at, at, at
FROM generate_series(1, $1) AS g,
     LATERAL (SELECT now() - make_interval(secs => g * (30 * 86400.0 / $1)) AS at) t
"""
FILL_MESSAGES = """
INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id, created_at,
                      updated_at)
SELECT gen_random_uuid(), t.chat_id, t.user_id, r.role, r.content, 'completed', t.id,
       t.created_at, t.completed_at
FROM tasks t CROSS JOIN (VALUES ('user', 'hello there'),
                                ('assistant', 'You said: hello there')) AS r(role, content)
WHERE t.chat_id LIKE 'hist%'
ORDER BY t.created_at, r.role DESC
"""
# The claim as a chat worker makes it (store/transitions.py: tf_claim, and the chat context
# its statement preloads), then the completion, on a task of a user and chat with history.
PLANNED = """
SELECT c.verdict, c.fence, tf_chat_context(c.user_id, c.chat_id, $1, 20, 50) AS context
FROM tf_claim($1, 'chat_message', 'u1', 'hist1', '{"content": "plan"}', 1, false, 'chat_tasks',
              5, 4, 1.0, 'plan-copy', $2, 300) c
"""
LARGE = ("tasks", "messages", "outbox")


async def fill(dsn: str, tasks: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)  # the login role: no row security in the way
    try:
        started = time.monotonic()
        await conn.execute(FILL_TASKS, tasks)
        filled_tasks = time.monotonic()
        await conn.execute(FILL_MESSAGES)
        await conn.execute("ANALYZE tasks; ANALYZE messages")
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    done = time.monotonic()
    return {"tasks_s": round(filled_tasks - started, 1),
            "messages_s": round(done - filled_tasks, 1),
            "database_mib": round(size / 2**20)}  # fmt: skip


async def plans(dsn: str) -> list[str]:
    """The plans of one claim and one completion (rolled back), as auto_explain logs them."""
    conn = await asyncpg.connect(dsn)
    logged: list[str] = []
    conn.add_log_listener(lambda _c, message: logged.append(message.message))
    task, holder = uuid.uuid4(), uuid.uuid4()
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(
            "INSERT INTO workers (id, worker, queue, host, pid, version, concurrency,"
            " heartbeat_s) VALUES ($1, 'chat', 'chat_tasks', 'bench', 1, 'bench', 1, 3600)",
            holder,
        )
        await conn.execute(
            "INSERT INTO tasks (id, type, user_id, chat_id, status, input, max_attempts)"
            " VALUES ($1, 'chat_message', 'u1', 'hist1', 'queued', '{\"content\": \"plan\"}', 5)",
            task,
        )
        await conn.execute(
            "INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)"
            " VALUES (gen_random_uuid(), 'hist1', 'u1', 'user', 'plan', 'completed', $1)",
            task,
        )
        await conn.execute(
            "LOAD 'auto_explain'; SET LOCAL auto_explain.log_min_duration = 0;"
            " SET LOCAL auto_explain.log_nested_statements = on;"
            " SET LOCAL auto_explain.log_analyze = on; SET LOCAL auto_explain.log_buffers = on;"
            " SET LOCAL auto_explain.log_level = notice; SET LOCAL client_min_messages = notice"
        )
        logged.append("-- the claim, with the chat context it preloads")
        claimed = await conn.fetchrow(PLANNED, task, holder)
        assert claimed is not None
        assert claimed["verdict"] == "claimed", claimed
        logged.append("-- the completion")
        await conn.fetchval(
            "SELECT tf_complete($1, $2, '{\"reply\": \"plan\"}', 'plan')", task, claimed["fence"]
        )
    finally:
        await tx.rollback()
        await conn.close()
    return logged


def seq_scans(logged: list[str]) -> list[str]:
    """Sequential scans of the large tables in the plans (there should be none)."""
    found = re.findall(r"Seq Scan on (\w+)", "\n".join(logged))
    return sorted({table for table in found if table in LARGE})


def cleanup_during(fleet: Fleet, n: int, via: str) -> tuple[dict[str, Any], float]:
    """W1 while retention deletes on the same database: its figures, and rows deleted a second."""
    count = "SELECT count(*) FROM tasks"
    before = asyncio.run(scalar(fleet.env["DATABASE_URL"], count))
    started = time.monotonic()
    cleaner = subprocess.Popen([*cli(fleet.env), "cleanup", "--older-than", "7d"], env=fleet.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        result = run_bench(fleet.env, n, via, fleet.url, fleet.ours)
    finally:
        cleaner.send_signal(signal.SIGINT)
        cleaner.wait(timeout=60)
    elapsed = time.monotonic() - started
    deleted = before - asyncio.run(scalar(fleet.env["DATABASE_URL"], count))
    return result, deleted / elapsed


async def scalar(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def alternate(rounds: int, fleets: dict[str, Fleet], n: int, via: str) -> dict[str, list[float]]:
    """W1 in rounds alternated between the fleets; each round's line printed."""
    figures: dict[str, list[float]] = {name: [] for name in fleets}
    for i in range(rounds):
        for name in list(fleets) if i % 2 == 0 else list(reversed(fleets)):
            f = fleets[name]
            result = run_bench(f.env, n, via, f.url, f.ours)
            figures[name].append(float(result["throughput"]))  # type: ignore[arg-type]
            print(json.dumps({"round": i + 1, "database": name, **result}), flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--via", choices=["amqp", "api"], default="amqp")
    args = parser.parse_args()
    fleets = {"empty": start_fleet(1, None), "grown": start_fleet(1, None)}
    out: dict[str, Any] = {"tasks": args.tasks, "n": args.n, "via": args.via}
    try:
        out["fill"] = asyncio.run(fill(fleets["grown"].env["DATABASE_URL"], args.tasks))
        print(json.dumps({"filled": out["fill"]}), flush=True)
        logged = asyncio.run(plans(fleets["grown"].env["DATABASE_URL"]))
        print("\n".join(logged), file=sys.stderr, flush=True)
        out["seq_scans_of_large_tables"] = seq_scans(logged)
        figures = alternate(args.rounds, fleets, args.n, args.via)
        alone: list[float] = []
        during: list[float] = []
        rates: list[float] = []
        grown = fleets["grown"]
        for i in range(args.rounds):
            for cleaning in (True, False) if i % 2 == 0 else (False, True):
                if cleaning:
                    result, rate = cleanup_during(grown, args.n, args.via)
                    rates.append(rate)
                else:
                    result, rate = run_bench(grown.env, args.n, args.via, grown.url, grown.ours), 0
                (during if cleaning else alone).append(float(result["throughput"]))
                print(json.dumps({"round": i + 1, "database": "grown", "retention": cleaning,
                                  "deleted_per_s": round(rate), **result}), flush=True)  # fmt: skip
    finally:
        for f in fleets.values():
            stop_fleet(f)
    medians = {k: statistics.median(v) for k, v in figures.items()}
    medians["grown_alone"] = statistics.median(alone)
    medians["grown_during_retention"] = statistics.median(during)
    with_retention = medians["grown_during_retention"] / medians["grown_alone"]
    out |= {"median_throughput": medians,
            "grown_over_empty": round(medians["grown"] / medians["empty"], 3),
            "retention_over_alone": round(with_retention, 3),
            "retention_deleted_per_s": round(statistics.median(rates))}  # fmt: skip
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

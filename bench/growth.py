"""`make bench-growth`: W1's cost as the history grows. Two fleets side by side (an API and a
chat worker each), one on an empty database, one on a database pre-filled with `--tasks`
finished chat tasks and their two messages each (spread over the last 29 days, the shape of a
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
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
from cpu import cpu_of, per_task_ms, server_pids  # bench/cpu.py
from run import Fleet, cli, start_fleet, stop_fleet  # bench/run.py
from run import run_bench as run_w1

from taskfleet.core.settings import Settings

# Finished chat tasks and their user and assistant messages, each in one statement; the
# chats (`hist…`) and users (`u…`) are apart from W1's (`bench-…`).
FILL_TASKS = """
INSERT INTO tasks (id, type, user_id, chat_id, status, input, output, progress, attempts,
                   max_attempts, fence, created_at, started_at, updated_at, completed_at)
SELECT gen_random_uuid(), 'chat_message', 'u' || (g % 5000), 'hist' || (g % 100000),
       'completed', '{"content": "hello there"}', '{"reply": "You said: hello there"}', 1, 1, 5,
       1, at, at, at, at
FROM generate_series(1, $1) AS g,
     LATERAL (SELECT now() - make_interval(secs => g * (29 * 86400.0 / $1)) AS at) t
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


def run_bench(fleet: Fleet, n: int, via: str) -> dict[str, Any]:
    """W1 on `fleet`, with the CPU a task of its processes and of the servers (bench/cpu.py)."""
    pids = server_pids(Settings().database_url, Settings().amqp_url)
    pids |= {"api": fleet.procs[0].pid, "worker": fleet.procs[1].pid}
    before = cpu_of(pids)
    result = run_w1(fleet.env, n, via, fleet.url, fleet.ours)
    result["cpu_ms_per_task"] = per_task_ms(before, cpu_of(pids), n)
    return result


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
        result = run_bench(fleet, n, via)
    finally:
        # Killed: its batch in flight is rolled back with its session, the others are done.
        cleaner.kill()
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


Rounds = dict[str, list[dict[str, Any]]]


def alternate(rounds: int, fleets: dict[str, Fleet], n: int, via: str, seen: Rounds) -> None:
    """W1 in rounds alternated between the fleets; each round's line printed."""
    for i in range(rounds):
        for name in list(fleets) if i % 2 == 0 else list(reversed(fleets)):
            result = run_bench(fleets[name], n, via)
            seen.setdefault(name, []).append(result)
            print(json.dumps({"round": i + 1, "database": name, **result}), flush=True)


def with_retention(rounds: int, grown: Fleet, n: int, via: str, seen: Rounds) -> None:
    """W1 on the grown database in rounds alternated between retention running and not."""
    for i in range(rounds):
        for cleaning in (True, False) if i % 2 == 0 else (False, True):
            if cleaning:
                result, rate = cleanup_during(grown, n, via)
                result["deleted_per_s"] = round(rate)
            else:
                result = run_bench(grown, n, via)
            seen.setdefault("grown_during_retention" if cleaning else "grown_alone", []).append(
                result
            )
            print(json.dumps({"round": i + 1, "database": "grown", "retention": cleaning,
                              **result}), flush=True)  # fmt: skip


def summary(seen: Rounds) -> dict[str, Any]:
    """Medians of the rounds of each kind: throughput, CPU a task by process; the ratios."""

    def median(rounds: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(float(r[key]) for r in rounds))

    throughput = {k: median(v, "throughput") for k, v in seen.items()}
    cpu = {k: {g: median([r["cpu_ms_per_task"] for r in v], g) for g in v[0]["cpu_ms_per_task"]}
           for k, v in seen.items()}  # fmt: skip
    deleted = median(seen["grown_during_retention"], "deleted_per_s")
    return {"median_throughput": throughput, "median_cpu_ms_per_task": cpu,
            "grown_over_empty": round(throughput["grown"] / throughput["empty"], 3),
            "retention_over_alone": round(throughput["grown_during_retention"]
                                          / throughput["grown_alone"], 3),
            "retention_deleted_per_s": deleted}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--via", choices=["amqp", "api"], default="amqp")
    args = parser.parse_args()
    # No retention job of the API's own: the rounds with retention run it where they choose.
    quiet = {"RETENTION_INTERVAL_S": "0"}
    fleets = {"empty": start_fleet(1, None, quiet), "grown": start_fleet(1, None, quiet)}
    out: dict[str, Any] = {"tasks": args.tasks, "n": args.n, "via": args.via}
    seen: Rounds = {}
    try:
        out["fill"] = asyncio.run(fill(fleets["grown"].env["DATABASE_URL"], args.tasks))
        print(json.dumps({"filled": out["fill"]}), flush=True)
        logged = asyncio.run(plans(fleets["grown"].env["DATABASE_URL"]))
        print("\n".join(logged), file=sys.stderr, flush=True)
        out["seq_scans_of_large_tables"] = seq_scans(logged)
        alternate(args.rounds, fleets, args.n, args.via, seen)
        with_retention(args.rounds, fleets["grown"], args.n, args.via, seen)
    finally:
        for f in fleets.values():
            stop_fleet(f)
    print(json.dumps(out | summary(seen)), flush=True)


if __name__ == "__main__":
    main()

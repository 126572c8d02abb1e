"""`make bench-growth`: W1's cost as the history grows. A database pre-filled with `--tasks`
finished chat tasks and their two messages each (spread over the last 29 days, the shape of
a month of history), vacuumed and checkpointed (bench/growth_fill.py); fleets (an API and a
chat worker each) on an empty database and on a copy of the grown one, and with `--old
COMMIT` the same two with that commit's code (its database copy migrated by it: the same
history, before and after a change, in the same minutes). Then

1. W1 in rounds alternated between the fleets: throughput, latency, CPU a task of each
   process, and what each task cost the database (bench/growth_stats.py: WAL bytes,
   full-page images, buffer reads, the indexes read from outside the buffer pool, the top
   statements when pg_stat_statements is loaded);
2. the plans of the claim (with the chat context it preloads) and the completion on the
   grown database (auto_explain, nested statements), and any sequential scan of a large
   table in them;
3. retention (`taskfleet cleanup --older-than 7d`) deleting on the grown database while W1
   runs, for each `--pause-ratios` value, in rounds alternated with W1 alone: rows deleted a
   second, and W1's ratio with and without it.

One JSON line per round, then one of figures; the plans on stderr.

    python bench/growth.py [--tasks 1000000] [--n 3000] [--rounds 3] [--via amqp [api]]
                           [--old COMMIT] [--pause-ratios 0 3] [--history-ids v4]
"""

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import growth_fill as grown_db  # bench/growth_fill.py
import growth_stats as db_stats  # bench/growth_stats.py
from cpu import cpu_of, per_task_ms, server_pids  # bench/cpu.py
from run import Fleet, cli, start_fleet, stop_fleet  # bench/run.py
from run import run_bench as run_w1
from side_by_side import cli_module, python_path, worktree  # bench/side_by_side.py

from taskfleet.core.settings import Settings
from taskfleet.store.pool import drop_database, with_database


def run_bench(fleet: Fleet, n: int, via: str, statements: bool) -> dict[str, Any]:
    """W1 on `fleet`, with the CPU a task of its processes and of the servers (bench/cpu.py)
    and what a task cost its database (bench/growth_stats.py)."""
    pids = server_pids(Settings().database_url, Settings().amqp_url)
    pids |= {"api": fleet.procs[0].pid, "worker": fleet.procs[1].pid}
    dsn = fleet.env["DATABASE_URL"]
    counters = db_stats.snapshot(dsn, statements)
    before = cpu_of(pids)
    result = run_w1(fleet.env, n, via, fleet.url, fleet.ours)
    result["cpu_ms_per_task"] = per_task_ms(before, cpu_of(pids), n)
    result["db_per_task"] = db_stats.per_task(dsn, counters, n, statements)
    return result


def cleanup_during(
    fleet: Fleet, n: int, via: str, pause_ratio: float, statements: bool
) -> tuple[dict[str, Any], float]:
    """W1 while retention deletes on the same database: its figures, and rows deleted a second."""
    count = "SELECT count(*) FROM tasks"
    before = asyncio.run(scalar(fleet.env["DATABASE_URL"], count))
    started = time.monotonic()
    command = [*cli(fleet.env), "cleanup", "--older-than", "7d", "--pause-ratio", str(pause_ratio)]
    cleaner = subprocess.Popen(command, env=fleet.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        result = run_bench(fleet, n, via, statements)
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


def alternate(
    rounds: int, fleets: dict[str, Fleet], n: int, via: str, seen: Rounds, statements: bool
) -> None:
    """W1 in rounds alternated between the fleets; each round's line printed. The rounds
    through the API are named `<fleet>_api`."""
    for i in range(rounds):
        for name in list(fleets) if i % 2 == 0 else list(reversed(fleets)):
            result = run_bench(fleets[name], n, via, statements)
            kind = name if via == "amqp" else f"{name}_api"
            seen.setdefault(kind, []).append(result)
            print(json.dumps({"round": i + 1, "database": kind, **result}), flush=True)


def with_retention(
    rounds: int, grown: Fleet, n: int, via: str, ratios: list[float], seen: Rounds, stm: bool
) -> None:
    """W1 on the grown database in rounds alternated between retention running (at each
    pause ratio) and not."""
    for i in range(rounds):
        kinds: list[float | None] = [*ratios, None]
        for ratio in kinds if i % 2 == 0 else kinds[::-1]:
            if ratio is None:
                result, name = run_bench(grown, n, via, stm), "grown_alone"
            else:
                result, rate = cleanup_during(grown, n, via, ratio, stm)
                result["deleted_per_s"], name = round(rate), f"grown_retention_pause_{ratio:g}"
            seen.setdefault(name, []).append(result)
            print(json.dumps({"round": i + 1, "database": name, **result}), flush=True)


def summary(seen: Rounds) -> dict[str, Any]:
    """Medians of the rounds of each kind: throughput, CPU and database counters a task."""

    def median(values: list[float]) -> float:
        return round(float(statistics.median(values)), 3)

    out: dict[str, Any] = {}
    for kind, rounds in seen.items():
        cpu = {g: median([r["cpu_ms_per_task"][g] for r in rounds])
               for g in rounds[0]["cpu_ms_per_task"]}  # fmt: skip
        db = {k: median([r["db_per_task"][k] for r in rounds])
              for k in ("wal_bytes", "wal_fpi", "blks_read", "blks_hit")}  # fmt: skip
        out[kind] = {"throughput": median([float(r["throughput"]) for r in rounds]),
                     "cpu_ms_per_task": cpu, "db_per_task": db}  # fmt: skip
        if "deleted_per_s" in rounds[0]:
            out[kind]["deleted_per_s"] = median([r["deleted_per_s"] for r in rounds])
    # The ratios the issue asks about: the grown database over the empty one (each code's),
    # W1 with retention over W1 alone, and this code over the old one on the same history.
    pairs = [(f"grown{c}{v}", f"{b}{c}{v}") for v in ("", "_api")
             for c, b in (("", "empty"), ("_old", "empty"))]  # fmt: skip
    pairs += [(f"grown{v}", f"grown_old{v}") for v in ("", "_api")]
    pairs += [(k, "grown_alone") for k in out if k.startswith("grown_retention")]
    out["ratios"] = {
        f"{a}/{b}": {
            "throughput": round(out[a]["throughput"] / out[b]["throughput"], 3),
            "postgresql_cpu": round(out[a]["cpu_ms_per_task"]["postgresql"]
                                    / out[b]["cpu_ms_per_task"]["postgresql"], 3),
        }
        for a, b in pairs
        if a in out and b in out
    }  # fmt: skip
    return out


def fleets_on(
    tasks: int, old: str | None, ids: str, stack: contextlib.ExitStack
) -> tuple[dict[str, Fleet], dict[str, Any]]:
    """The grown database (made by the old code when there is one, as an upgrade finds it),
    a copy of it for each code, and the fleets: empty and grown, for this code and the old."""
    codes: dict[str, dict[str, str]] = {"": {}}
    if old is not None:
        root = stack.enter_context(worktree(old))
        codes["_old"] = {"PYTHONPATH": python_path(root), "BENCH_CLI_MODULE": cli_module(root)}
    name = f"taskfleet_growth_{uuid.uuid4().hex[:8]}"
    template = with_database(Settings().database_url, name)
    maker = {**os.environ, **codes[list(codes)[-1]]}
    grown_db.migrate(maker, cli(maker), template)
    stack.callback(lambda: asyncio.run(drop_database(template)))
    made: dict[str, Any] = {"fill": asyncio.run(grown_db.fill(template, tasks, ids))}
    made["settle_s"] = asyncio.run(grown_db.settle(template))
    print(json.dumps(made), flush=True)
    quiet = {"RETENTION_INTERVAL_S": "0"}  # the rounds with retention run it where they choose
    fleets: dict[str, Fleet] = {}
    for suffix, env in codes.items():
        copied = asyncio.run(grown_db.copy(template, f"{name}{suffix}_copy"))
        for kind, dsn in (("empty", None), ("grown", copied)):
            fleets[kind + suffix] = start_fleet(1, None, {**quiet, **env}, dsn=dsn)
            stack.callback(stop_fleet, fleets[kind + suffix])
    return fleets, made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--via", choices=["amqp", "api"], nargs="+", default=["amqp"])
    parser.add_argument("--old", help="also run this commit's code on a copy of the same history")
    parser.add_argument("--pause-ratios", type=float, nargs="*", default=[0.0, 3.0])
    parser.add_argument(
        "--history-ids", choices=["v4", "v7"], default="v4", help="the filled history's ids"
    )
    args = parser.parse_args()
    out: dict[str, Any] = {"tasks": args.tasks, "n": args.n, "via": args.via, "old": args.old}
    seen: Rounds = {}
    with contextlib.ExitStack() as stack:
        fleets, out["made"] = fleets_on(args.tasks, args.old, args.history_ids, stack)
        grown = fleets["grown"].env["DATABASE_URL"]
        statements = all(asyncio.run(db_stats.has_statements(f.env["DATABASE_URL"]))
                         for f in fleets.values())  # fmt: skip
        logged = asyncio.run(grown_db.plans(grown))
        print("\n".join(logged), file=sys.stderr, flush=True)
        out["seq_scans_of_large_tables"] = grown_db.seq_scans(logged)
        for via in args.via:
            alternate(args.rounds, fleets, args.n, via, seen, statements)
        if args.pause_ratios:
            with_retention(args.rounds, fleets["grown"], args.n, args.via[0], args.pause_ratios,
                           seen, statements)  # fmt: skip
    print(json.dumps(out | {"medians": summary(seen)}), flush=True)


if __name__ == "__main__":
    main()

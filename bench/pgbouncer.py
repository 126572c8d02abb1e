"""`make bench-pgbouncer`: what PgBouncer in transaction mode costs W1, and what its prepared
statement support is worth. Fleets of one API and one chat worker, alive side by side, with
rounds alternated between them:

- `direct`: PostgreSQL itself, asyncpg's statement cache on (the default);
- `direct-nocache`: PostgreSQL itself, the cache off (what the cache alone is worth);
- `bouncer-nocache`: Debian's PgBouncer (1.18), DATABASE_STATEMENT_CACHE=0 (what it needs);
- `bouncer-prepared`: a PgBouncer 1.21+ (deploy/tools/build-pgbouncer) with
  max_prepared_statements, the cache on;
- `bouncer-new-nocache`: that same newer PgBouncer, the cache off (the version's own share).

The last two only when `--new-pgbouncer PATH` names such a binary.

    python bench/pgbouncer.py [--n 3000] [--rounds 3] [--via amqp] [--new-pgbouncer PATH]
"""

import argparse
import json
import os
import statistics
import subprocess
import uuid
from urllib.parse import urlsplit

from cpu import cpu_of, listening_pid, per_task_ms, server_pids  # bench/cpu.py
from run import ROOT, Fleet, cli, run_bench, stop_fleet, wait_ready  # bench/run.py

from taskfleet.core.settings import Settings
from taskfleet.store.pool import with_database

SCRIPT = ROOT / "deploy" / "local" / "pgbouncer"
PREPARED = "200"


def bouncer(port: int, pg_port: int, binary: str | None) -> None:
    env = {**os.environ, "PGBOUNCER_PREPARED": PREPARED if binary else "0"}
    env |= {"PGBOUNCER": binary} if binary else {}
    subprocess.run([SCRIPT, "up", str(port), str(pg_port)], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def fleet(port: int | None, cache: int) -> Fleet:
    """An API and a chat worker on a database of their own, through PgBouncer on `port`
    (None: straight to PostgreSQL), with asyncpg's statement cache `cache`."""
    tag = uuid.uuid4().hex[:8]
    direct = with_database(Settings().database_url, f"taskfleet_bench_{tag}")
    pooled = (
        direct
        if port is None
        else f"postgresql://postgres@127.0.0.1:{port}/{urlsplit(direct).path[1:]}"
    )
    env = {**os.environ, "DATABASE_URL": direct, "TASKFLEET_NAMESPACE": f"bench{tag}",
           "TASKFLEET_JWT_SECRET": uuid.uuid4().hex * 2, "LOG_LEVEL": "warning",
           "METRICS_PORT": "0", "API_METRICS_PORT": "0"}  # fmt: skip
    subprocess.run([*cli(env), "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    run_env = {**env, "DATABASE_URL": pooled, "DATABASE_DIRECT_URL": direct,
               "DATABASE_STATEMENT_CACHE": str(cache)}  # fmt: skip
    api_port = 18000 + int(tag[:4], 16) % 1000
    procs = [subprocess.Popen([*cli(run_env), *c], env=run_env, stdout=subprocess.DEVNULL)
             for c in (["api", "--port", str(api_port)], ["worker", "chat"])]  # fmt: skip
    started = Fleet(env, f"http://127.0.0.1:{api_port}", procs)  # env: stop_fleet drops `direct`
    wait_ready(started.url)
    return started


def wal_bytes() -> int:
    """WAL written so far by the PostgreSQL cluster (all its databases: the fleets are idle but
    for the one in its round)."""
    query = ["psql", Settings().database_url, "-Atc", "SELECT wal_bytes FROM pg_stat_wal"]
    out = subprocess.run(query, check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--via", choices=["amqp", "api"], default="amqp")
    parser.add_argument("--new-pgbouncer", default=None, help="a PgBouncer 1.21+ binary")
    args = parser.parse_args()
    pg_port = urlsplit(Settings().database_url).port or 5432
    ports = {"debian": 6461, "new": 6462}
    bouncer(ports["debian"], pg_port, None)
    plans: dict[str, tuple[int | None, int]] = {"direct": (None, 100), "direct-nocache": (None, 0)}
    plans["bouncer-nocache"] = (ports["debian"], 0)
    if args.new_pgbouncer:
        bouncer(ports["new"], pg_port, args.new_pgbouncer)
        plans |= {"bouncer-prepared": (ports["new"], 100), "bouncer-new-nocache": (ports["new"], 0)}
    fleets: dict[str, Fleet] = {}
    figures: dict[str, list[float]] = {name: [] for name in plans}
    cpu: dict[str, list[dict[str, float]]] = {name: [] for name in plans}
    wal: dict[str, list[int]] = {name: [] for name in plans}
    servers = server_pids(Settings().database_url, Settings().amqp_url)
    try:
        for name, (port, cache) in plans.items():
            fleets[name] = fleet(port, cache)
        for i in range(args.rounds):
            order = list(plans) if i % 2 == 0 else list(reversed(plans))
            for name in order:
                f, port = fleets[name], plans[name][0]
                # Only this fleet's processes and the servers it uses (bench/cpu.py).
                pids = {**servers, "api": f.procs[0].pid, "worker": f.procs[1].pid}
                pooler = listening_pid(port) if port else None
                pids |= {"pgbouncer": pooler} if pooler else {}
                before, wal_before = cpu_of(pids), wal_bytes()
                result = run_bench(f.env, args.n, args.via, f.url, f.ours)
                result["cpu_ms_per_task"] = per_task_ms(before, cpu_of(pids), args.n)
                result["wal_bytes_per_task"] = round((wal_bytes() - wal_before) / args.n)
                figures[name].append(float(result["throughput"]))  # type: ignore[arg-type]
                cpu[name].append(result["cpu_ms_per_task"])  # type: ignore[arg-type]
                wal[name].append(result["wal_bytes_per_task"])  # type: ignore[arg-type]
                print(json.dumps({"round": i + 1, "setup": name, **result}), flush=True)
    finally:
        for f in fleets.values():
            stop_fleet(f)
        for port in ports.values():
            subprocess.run([SCRIPT, "down", str(port)], check=False)
    medians = {name: statistics.median(v) for name, v in figures.items() if v}
    print(json.dumps({"via": args.via, "n": args.n, "median_throughput": medians,
                      "over_direct": {k: round(v / medians["direct"], 3)
                                      for k, v in medians.items()},
                      "median_cpu_ms_per_task": {k: median_cpu(v)
                                                 for k, v in cpu.items() if v},
                      "median_wal_bytes_per_task": {k: statistics.median(v)
                                                    for k, v in wal.items() if v}}))  # fmt: skip


def median_cpu(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The median CPU milliseconds a task of each tree (PostgreSQL, PgBouncer, the worker...)."""
    groups = {group for r in rounds for group in r}
    return {g: round(statistics.median(r.get(g, 0.0) for r in rounds), 3) for g in sorted(groups)}


if __name__ == "__main__":
    main()

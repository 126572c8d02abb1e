"""`make bench-replication`: what synchronous replication costs W1. One fleet on a primary with
a streaming standby (deploy/local/postgres-pair), rounds alternated between synchronous
(every commit waits for the standby's flush: what keeps every 202 through a failover) and
asynchronous replication, switched on the primary between rounds (ALTER SYSTEM, reload).

    python bench/replication.py [--n 3000] [--rounds 3] [--via amqp]
"""

import argparse
import json
import os
import statistics
import subprocess

from run import ROOT, run_bench, start_fleet, stop_fleet  # bench/run.py

SCRIPT = ROOT / "deploy" / "local" / "postgres-pair"
PRIMARY, STANDBY = "5441", "5442"


def replication(mode: str) -> None:
    """`sync` (the standby named, as the script sets it) or `async` (no standby waited for)."""
    value = "DEFAULT" if mode == "sync" else "''"
    for sql in (f"ALTER SYSTEM SET synchronous_standby_names = {value}", "SELECT pg_reload_conf()"):
        subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-h", "127.0.0.1", "-p", PRIMARY,
                        "-Atqc", sql], check=True, stdout=subprocess.DEVNULL)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--via", choices=["amqp", "api"], default="amqp")
    args = parser.parse_args()
    subprocess.run([SCRIPT, "down", PRIMARY, STANDBY], check=True)
    exported = subprocess.run([SCRIPT, "up", PRIMARY, STANDBY], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
    os.environ["DATABASE_URL"] = exported.strip().splitlines()[-1].removeprefix("DATABASE_URL=")
    fleet = start_fleet(1, None)
    figures: dict[str, list[float]] = {"sync": [], "async": []}
    try:
        for i in range(args.rounds):
            for mode in ("sync", "async") if i % 2 == 0 else ("async", "sync"):
                replication(mode)
                result = run_bench(fleet.env, args.n, args.via, fleet.url, fleet.ours)
                figures[mode].append(float(result["throughput"]))  # type: ignore[arg-type]
                print(json.dumps({"round": i + 1, "replication": mode, **result}), flush=True)
    finally:
        stop_fleet(fleet)
        subprocess.run([SCRIPT, "down", PRIMARY, STANDBY], check=True)
    sync, asyn = (statistics.median(figures[m]) for m in ("sync", "async"))
    print(json.dumps({"via": args.via, "sync_median": sync, "async_median": asyn,
                      "sync_over_async": round(sync / asyn, 3)}))  # fmt: skip


if __name__ == "__main__":
    main()

"""`make bench`: a private fleet (API + chat workers, scripted provider) on its own database
and namespace; workload W1 via amqp and via api; CPU split and peak RSS; a soak that shows
whether memory stays flat. One JSON line per figure set, on stdout.

    python bench/run.py [--n 3000] [--rounds 3] [--workers 2] [--concurrency 16] [--soak 20000]
                        [--via amqp api] [--profile DIR] [--watch]
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from cpu import CoreSampler, cpu_of, server_pids  # bench/cpu.py

from taskfleet.broker.topology import delete_namespace
from taskfleet.core.settings import Settings
from taskfleet.store.pool import drop_database, with_database

ROOT = Path(__file__).resolve().parent.parent


def cpu_by_group(ours: dict[int, str], env: dict[str, str] | None = None) -> dict[str, float]:
    """CPU seconds so far of our processes by group (api, workers), and of the PostgreSQL (or
    the PgBouncer) and the RabbitMQ that `env`'s URLs name, each with its descendants
    (bench/cpu.py): other clusters and nodes on a shared machine are not counted."""
    totals: dict[str, float] = {}
    for pid, group in ours.items():
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        totals[group] = totals.get(group, 0.0) + t.user + t.system
    env, defaults = env or dict(os.environ), Settings()
    servers = server_pids(
        env.get("DATABASE_URL") or defaults.database_url, env.get("AMQP_URL") or defaults.amqp_url
    )
    with contextlib.suppress(psutil.Error, KeyError):  # DATABASE_URL names a pooler
        if psutil.Process(servers["postgresql"]).name() == "pgbouncer":
            servers["pgbouncer"] = servers.pop("postgresql")
    return totals | cpu_of(servers)


def rss_mib(pid: int) -> dict[str, float]:
    """Current and peak (VmHWM) resident memory of a process, MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kib(key: str) -> int:
        return int(fields[key].split()[0])

    return {"rss_mib": round(kib("VmRSS") / 1024, 1), "peak_rss_mib": round(kib("VmHWM") / 1024, 1)}


def cli(env: dict[str, str]) -> list[str]:
    """The command line of the code under test: BENCH_CLI_MODULE names it for an older commit
    (bench/side_by_side.py), whose command line may still live at `taskfleet`."""
    return [sys.executable, "-m", env.get("BENCH_CLI_MODULE", "taskfleet_cli")]


def run_bench(
    env: dict[str, str], n: int, via: str, url: str, ours: dict[int, str], watch: bool = False
) -> dict[str, object]:
    before = cpu_by_group(ours, env)
    # The client exits before the figures are taken: its CPU is this process's children's.
    client_before = _children_cpu_s()
    started = time.monotonic()
    cmd = [*cli(env), "bench", "--n", str(n), "--via", via, "--url", url]
    cmd += ["--watch"] if watch else []
    with CoreSampler() as cores:
        bench = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        out, _ = bench.communicate(timeout=900)
    wall = time.monotonic() - started
    after = cpu_by_group(ours, env)
    after["client"] = _children_cpu_s() - client_before
    figures: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    figures["cpu_s"] = {k: round(after.get(k, 0) - before.get(k, 0), 2) for k in after}
    figures["wall_s"] = round(wall, 2)
    figures["cores_busy_pct"] = cores.busy_pct(figures.get("window"))  # type: ignore[arg-type]
    return figures


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"bench: the API at {url} did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", 3000)))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--apis", type=int, default=1, help="API replicas (--via api uses all)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="slots a worker (default: the worker's own)"
    )
    parser.add_argument("--soak", type=int, default=int(os.environ.get("BENCH_SOAK", 20000)))
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="record py-spy profiles (collapsed stacks) of our processes here",
    )
    parser.add_argument("--via", choices=["amqp", "api"], nargs="*", default=["amqp", "api"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per route; medians last")
    parser.add_argument(
        "--watch", action="store_true", help="an all-users WebSocket listens in every round"
    )
    args = parser.parse_args()

    fleet = start_fleet(args.workers, args.concurrency, apis=args.apis)
    env, url, procs, ours = fleet.env, fleet.url, fleet.procs, fleet.ours
    try:
        time.sleep(1)  # the workers subscribe
        for via in args.via:
            rounds = []
            with profiling(args.profile, via, procs):
                for i in range(args.rounds):
                    rounds.append(run_bench(env, args.n, via, url, ours, args.watch))
                    print(json.dumps({"round": i + 1, **rounds[-1]}), flush=True)
            print(json.dumps(medians(via, rounds)), flush=True)
        if args.soak:
            soak(env, url, ours, procs, args.soak, args.watch)
    finally:
        stop_fleet(fleet)


@dataclass
class Fleet:
    env: dict[str, str]
    url: str
    procs: list[subprocess.Popen[bytes]]
    apis: int = 1  # the first `apis` processes are API replicas; `url` names each, comma-separated

    @property
    def ours(self) -> dict[int, str]:
        return {p.pid: "api" if i < self.apis else "workers" for i, p in enumerate(self.procs)}


def start_fleet(
    workers: int,
    concurrency: int | None,
    extra_env: dict[str, str] | None = None,
    apis: int = 1,
    dsn: str | None = None,
) -> Fleet:
    """The API and chat workers on a database and namespace of their own, migrated, ready.
    `concurrency` None: as `taskfleet worker chat` starts with no flag.

    `extra_env` reaches every process (bench/side_by_side.py runs another commit's code);
    `apis` API replicas; `dsn` names a database made for it already (bench/growth.py's
    pre-filled ones)."""
    tag = uuid.uuid4().hex[:8]
    dsn = dsn or with_database(Settings().database_url, f"taskfleet_bench_{tag}")
    env = {**os.environ, **(extra_env or {}), "DATABASE_URL": dsn,
           "TASKFLEET_NAMESPACE": f"bench{tag}", "TASKFLEET_JWT_SECRET": uuid.uuid4().hex * 2,
           "LOG_LEVEL": "warning", "METRICS_PORT": "0", "API_METRICS_PORT": "0"}  # fmt: skip
    subprocess.run([*cli(env), "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    port = 18000 + int(tag[:4], 16) % 1000
    commands = [["api", "--port", str(port + k)] for k in range(apis)]
    slots = [] if concurrency is None else ["--concurrency", str(concurrency)]
    commands += [["worker", "chat", *slots]] * workers
    procs = [
        subprocess.Popen([*cli(env), *c], env=env, stdout=subprocess.DEVNULL) for c in commands
    ]
    urls = [f"http://127.0.0.1:{port + k}" for k in range(apis)]
    fleet = Fleet(env, ",".join(urls), procs, apis)
    try:
        for url in urls:
            wait_ready(url)
    except BaseException:
        stop_fleet(fleet)
        raise
    return fleet


def stop_fleet(fleet: Fleet) -> None:
    """Stop its processes; drop its database and broker namespace (idle quorum queues left
    behind would cost RabbitMQ CPU in every later run)."""
    for p in fleet.procs:
        p.terminate()
    for p in fleet.procs:
        p.wait(timeout=60)
    dsn, namespace = fleet.env["DATABASE_URL"], fleet.env["TASKFLEET_NAMESPACE"]
    asyncio.run(drop_database(dsn))
    asyncio.run(delete_namespace(Settings(DATABASE_URL=dsn, TASKFLEET_NAMESPACE=namespace)))


def medians(via: str, rounds: list[dict[str, object]]) -> dict[str, object]:
    def median(key: str) -> object:
        return statistics.median(float(r[key]) for r in rounds)  # type: ignore[arg-type]

    return {"via": via, "rounds": len(rounds), "median_throughput": median("throughput"),
            "median_p50_ms": median("p50_ms"), "median_p99_ms": median("p99_ms"),
            "median_e2e_p50_ms": median("e2e_p50_ms"), "median_e2e_p99_ms": median("e2e_p99_ms"),
            "multi_attempt": sum(int(r["multi_attempt"]) for r in rounds)}  # type: ignore[call-overload]  # fmt: skip


@contextlib.contextmanager
def profiling(where: Path | None, via: str, procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """py-spy on the API and each worker for the length of one run (`--profile DIR`)."""
    if where is None:
        yield
        return
    where.mkdir(parents=True, exist_ok=True)
    names = ["api"] + [f"worker{i}" for i in range(1, len(procs))]
    spies = [
        subprocess.Popen(
            [
                "py-spy",
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "-p",
                str(p.pid),
                "-o",
                str(where / f"{via}-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, p in zip(names, procs, strict=True)
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)


def soak(
    env: dict[str, str],
    url: str,
    ours: dict[int, str],
    procs: list[subprocess.Popen[bytes]],
    total: int,
    watch: bool = False,
) -> None:
    """Memory across many tasks, submitted through the API so that every process works:
    RSS after the first 2,000, after half of `total` and after `total`. Caches that are
    capped (the hub's replay buffer, a socket's seqs) fill in the first half; flat is the
    second half."""
    marks: dict[str, object] = {}
    done = 0
    for target in sorted({min(2000, total), total // 2, total} - {0}):
        run_bench(env, target - done, "api", url, ours, watch)
        done = target
        marks[str(target)] = {
            ("api" if i == 0 else f"worker{i}"): rss_mib(p.pid) for i, p in enumerate(procs)
        }
    print(json.dumps({"soak_tasks": total, "rss_by_tasks": marks}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

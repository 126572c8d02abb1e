"""Two fleets at once, this checkout against another commit, with W1 rounds alternated.

The machine's speed drifts by up to half within minutes, so two `make bench` runs one after
the other can show a change that is not there. Here both fleets run side by side (the other
commit from a git worktree, each on its own database and namespace) and the rounds
alternate, A B B A A B ...; the ratio of each pair is what the change did.

    python bench/side_by_side.py --old 306222a [--rounds 4] [--via api] [--n 3000]
        [--new-workers 1 32] [--old-workers 2 16] [--watch]
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from run import ROOT, run_bench, wait_ready  # bench/run.py

from taskfleet.db import drop_database, with_database
from taskfleet.settings import Settings
from taskfleet.topology import delete_namespace


@dataclass
class Fleet:
    name: str
    env: dict[str, str]
    url: str
    procs: list[subprocess.Popen[bytes]]

    @property
    def ours(self) -> dict[int, str]:
        return {p.pid: "api" if i == 0 else "workers" for i, p in enumerate(self.procs)}


def python_path(root: Path) -> str:
    """The commit's own packages ahead of the virtualenv's (which point at this checkout)."""
    services = sorted((root / "services").iterdir())
    return os.pathsep.join([str(root / "shared"), *(str(s) for s in services)])


def start(name: str, root: Path, workers: int, concurrency: int) -> Fleet:
    tag = uuid.uuid4().hex[:8]
    dsn = with_database(Settings().database_url, f"taskfleet_bench_{tag}")
    env = {**os.environ, "PYTHONPATH": python_path(root), "DATABASE_URL": dsn,
           "TASKFLEET_NAMESPACE": f"bench{tag}", "TASKFLEET_JWT_SECRET": uuid.uuid4().hex * 2,
           "LOG_LEVEL": "warning", "METRICS_PORT": "0"}  # fmt: skip
    subprocess.run([sys.executable, "-m", "taskfleet", "migrate"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    port = 18000 + int(tag[:4], 16) % 1000
    commands = [["api", "--port", str(port)]]
    commands += [["worker", "chat", "--concurrency", str(concurrency)]] * workers
    procs = [subprocess.Popen([sys.executable, "-m", "taskfleet", *c], env=env,
                              stdout=subprocess.DEVNULL) for c in commands]  # fmt: skip
    fleet = Fleet(name, env, f"http://127.0.0.1:{port}", procs)
    wait_ready(fleet.url)
    return fleet


def stop(fleet: Fleet) -> None:
    for p in fleet.procs:
        p.terminate()
    for p in fleet.procs:
        p.wait(timeout=60)
    dsn, namespace = fleet.env["DATABASE_URL"], fleet.env["TASKFLEET_NAMESPACE"]
    asyncio.run(drop_database(dsn))
    asyncio.run(delete_namespace(Settings(DATABASE_URL=dsn, TASKFLEET_NAMESPACE=namespace)))


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="taskfleet-old-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), commit],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                       check=False, capture_output=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of rounds")
    parser.add_argument("--via", choices=["amqp", "api"], default="api")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--new-workers", type=int, nargs=2, default=[1, 32],
                        metavar=("PROCESSES", "SLOTS"))  # fmt: skip
    parser.add_argument("--old-workers", type=int, nargs=2, default=[1, 32],
                        metavar=("PROCESSES", "SLOTS"))  # fmt: skip
    parser.add_argument("--watch", action="store_true", help="a WebSocket listens (api)")
    args = parser.parse_args()

    results: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
    with worktree(args.old) as old_root, contextlib.ExitStack() as stack:
        fleets = []
        for name, root, shape in (("new", ROOT, args.new_workers),
                                  ("old", old_root, args.old_workers)):  # fmt: skip
            fleet = start(name, root, *shape)
            stack.callback(stop, fleet)
            fleets.append(fleet)
        for i in range(args.rounds):
            for fleet in fleets if i % 2 == 0 else fleets[::-1]:
                figures = run_bench(fleet.env, args.n, args.via, fleet.url, fleet.ours,
                                    args.watch)  # fmt: skip
                spent = cast(dict[str, float], figures["cpu_s"])
                cpu = {k: round(v * 1000 / args.n, 2) for k, v in spent.items()}
                results[fleet.name].append((float(str(figures["throughput"])), sum(cpu.values())))
                print(fleet.name, figures["throughput"], figures["p99_ms"], cpu, flush=True)
    ratios = [n[0] / o[0] for n, o in zip(results["new"], results["old"], strict=True)]
    median = {k: (statistics.median(t for t, _ in v), statistics.median(c for _, c in v))
              for k, v in results.items()}  # fmt: skip
    print(f"task/s new {median['new'][0]:.0f} old {median['old'][0]:.0f};"
          f" new/old by pair {[round(r, 3) for r in ratios]},"
          f" median {statistics.median(ratios):.3f};"
          f" CPU ms per task new {median['new'][1]:.2f} old {median['old'][1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Two fleets at once, this checkout against another commit, with W1 rounds alternated.

The machine's speed drifts by up to half within minutes, so two `make bench` runs one after
the other can show a change that is not there. Here both fleets run side by side (the other
commit from a git worktree, each on its own database and namespace) and the rounds
alternate, A B B A A B ...; the ratio of each pair is what the change did.

    python bench/side_by_side.py --old 306222a [--rounds 4] [--via api] [--n 3000]
        [--new-workers 1 32] [--old-workers 2 16] [--watch]

SLOTS 0 starts the worker with no --concurrency: the defaults of that commit. `--old HEAD
--new-env NAME=VALUE` compares one setting against none on the same code (tracing:
`--new-env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318` with bench/otlp_sink.py), and
`--new-apis 2 --new-workers 2 16` two replicas of each against one (docs/capacity.md).
`--open-rate 550` alternates open-loop runs at that rate (bench/openloop.py) instead of W1:
the latency and the fleet's CPU a task where the queue stays shallow.
"""

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from openloop import run_open  # bench/openloop.py
from run import ROOT, Fleet, run_bench, start_fleet, stop_fleet  # bench/run.py


def python_path(root: Path) -> str:
    """The commit's own packages ahead of the virtualenv's (which point at this checkout)."""
    services = sorted((root / "services").iterdir())
    cli = [str(root / "cli")] if (root / "cli").is_dir() else []
    return os.pathsep.join([str(root / "shared"), *cli, *(str(s) for s in services)])


def cli_module(root: Path) -> str:
    """The command line's module in that commit (it left the kernel for `taskfleet_cli`)."""
    return "taskfleet_cli" if (root / "cli" / "taskfleet_cli").is_dir() else "taskfleet"


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="taskfleet-old-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), commit],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            check=False,
            capture_output=True,
        )


@contextlib.contextmanager
def fleets_of(args: argparse.Namespace) -> Iterator[list[tuple[str, Fleet]]]:
    """The new fleet (this checkout) and the old (the commit's worktree), started."""
    with worktree(args.old) as old_root, contextlib.ExitStack() as stack:
        fleets: list[tuple[str, Fleet]] = []
        new_env = dict(pair.split("=", 1) for pair in args.new_env)
        for name, root, (processes, slots), apis, own in (
            ("new", ROOT, args.new_workers, args.new_apis, new_env),
            ("old", old_root, args.old_workers, args.old_apis, {}),
        ):
            extra = {"PYTHONPATH": python_path(root), "BENCH_CLI_MODULE": cli_module(root), **own}
            fleet = start_fleet(processes, slots or None, extra_env=extra, apis=apis)
            stack.callback(stop_fleet, fleet)
            fleets.append((name, fleet))
        yield fleets


def open_rounds(args: argparse.Namespace) -> None:
    """Open-loop rounds at one fixed rate, alternated: what a change does to the latency and
    to the CPU a task where the queue stays shallow (statements carry few calls there)."""
    results: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
    with fleets_of(args) as fleets:
        for i in range(args.rounds):
            for name, fleet in fleets if i % 2 == 0 else fleets[::-1]:
                figures = asyncio.run(run_open(fleet, args.via, args.open_rate, args.seconds))
                cpu = sum(figures["fleet_cpu_ms_a_task"].values())
                p99 = figures["accepted_to_completed_ms"]["p99"]
                results[name].append((p99, cpu))
                print(name, figures["sent_rate"], figures["accepted_to_completed_ms"],
                      figures["fleet_cpu_ms_a_task"], f"busy {figures['cores_busy_pct']}%",
                      flush=True)  # fmt: skip
    cpu_ratios = [n[1] / o[1] for n, o in zip(results["new"], results["old"], strict=True)]
    print(
        f"p99 ms new {statistics.median(p for p, _ in results['new']):.1f}"
        f" old {statistics.median(p for p, _ in results['old']):.1f};"
        f" fleet CPU ms a task new {statistics.median(c for _, c in results['new']):.2f}"
        f" old {statistics.median(c for _, c in results['old']):.2f},"
        f" new/old by pair {[round(r, 3) for r in cpu_ratios]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=4, help="pairs of rounds")
    parser.add_argument("--via", choices=["amqp", "api"], default="api")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument(
        "--new-workers", type=int, nargs=2, default=[1, 32], metavar=("PROCESSES", "SLOTS")
    )
    parser.add_argument(
        "--old-workers", type=int, nargs=2, default=[1, 32], metavar=("PROCESSES", "SLOTS")
    )
    parser.add_argument("--watch", action="store_true", help="a WebSocket listens (api)")
    parser.add_argument("--new-apis", type=int, default=1, help="API replicas of the new fleet")
    parser.add_argument("--old-apis", type=int, default=1, help="API replicas of the old fleet")
    parser.add_argument(
        "--new-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for the new fleet only (e.g. OTEL_EXPORTER_OTLP_ENDPOINT=...)",
    )
    parser.add_argument(
        "--open-rate",
        type=float,
        default=None,
        help="open-loop rounds at this many arrivals a second (bench/openloop.py) instead of W1",
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="of arrivals (--open-rate)")
    args = parser.parse_args()
    if args.open_rate:
        return open_rounds(args)

    results: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
    with fleets_of(args) as fleets:
        for i in range(args.rounds):
            for name, fleet in fleets if i % 2 == 0 else fleets[::-1]:
                figures = run_bench(fleet.env, args.n, args.via, fleet.url, fleet.ours, args.watch)
                spent = cast(dict[str, float], figures["cpu_s"])
                cpu = {k: round(v * 1000 / args.n, 2) for k, v in spent.items()}
                results[name].append((float(str(figures["throughput"])), sum(cpu.values())))
                busy = figures.get("cores_busy_pct")
                print(
                    name, figures["throughput"], figures["p99_ms"], cpu, f"busy {busy}%", flush=True
                )
    ratios = [n[0] / o[0] for n, o in zip(results["new"], results["old"], strict=True)]
    median = {
        k: (statistics.median(t for t, _ in v), statistics.median(c for _, c in v))
        for k, v in results.items()
    }
    print(
        f"task/s new {median['new'][0]:.0f} old {median['old'][0]:.0f};"
        f" new/old by pair {[round(r, 3) for r in ratios]},"
        f" median {statistics.median(ratios):.3f};"
        f" CPU ms per task new {median['new'][1]:.2f} old {median['old'][1]:.2f}"
    )


if __name__ == "__main__":
    main()

"""`make bench-peers`: workload W1 on taskfleet and on its peers, in alternating rounds, as one
table with medians and ratios.

The contenders all run at once for the whole benchmark, each idle while another works: the
hand-written aio-pika + asyncpg loop, Dramatiq and Celery (bench/peer_fleet.py, each in its
own virtualenv), and a taskfleet fleet (the API and one chat worker, as `taskfleet worker
chat` starts with no flag: bench/run.py) measured via amqp and via api. Each round runs every
contender once, in an order that turns from round to round; a ratio is taken within each round
and the table shows the median of the rounds: the machine's speed drifts within minutes.

    python bench/compare.py [--n 2000] [--rounds 3] [--peers loop dramatiq celery]
                            [--via amqp api] [--json]
"""

import argparse
import asyncio
import json
import statistics
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

from cpu import CoreSampler, cpu_of, server_pids, tree_cpu_s
from peer_fleet import KINDS, Peer, cleanup, make_database, run_round, start_peer, stop_peer
from run import Fleet, run_bench, start_fleet, stop_fleet  # bench/run.py

from taskfleet.core.settings import Settings
from taskfleet.store.pool import with_database

Results = dict[str, list[dict[str, Any]]]  # contender -> its figures, one per round
TASKFLEET_SETUP = "the API and 1 chat worker with no flag (`taskfleet worker chat`)"


def contender_order(names: list[str], round_no: int) -> list[str]:
    """Every contender once, the order turned by one each round: none always runs first."""
    shift = round_no % len(names)
    return names[shift:] + names[:shift]


def ratio(results: Results, name: str, base: str) -> float | None:
    """The median over rounds of name's throughput over base's in the same round."""
    if base not in results or name not in results:
        return None
    pairs = zip(results[name], results[base], strict=True)
    ratios = [a["throughput"] / b["throughput"] for a, b in pairs if b["throughput"]]
    return round(statistics.median(ratios), 2) if ratios else None


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _cpu(rounds: list[dict[str, Any]], key: str) -> str:
    spent = [r["cpu_ms_a_task"][key] for r in rounds if "cpu_ms_a_task" in r]
    return f"{statistics.median(spent):.2f}" if spent else "-"


def _busy(rounds: list[dict[str, Any]]) -> str:
    """The median share of the machine's cores that were busy in the rounds' work windows."""
    busy = [r["cores_busy_pct"] for r in rounds if r.get("cores_busy_pct") is not None]
    return f"{statistics.median(busy):.0f} %" if busy else "-"


def table(results: Results, setups: dict[str, str]) -> str:
    """One Markdown table: median task/s (range), latency from publish or 202, multi-attempt
    tasks, and the ratios to the loop and to Dramatiq."""
    lines = [
        "| contender | what ran | task/s, median (range) | p50 / p99 ms | multi-attempt"
        " | x loop | x Dramatiq | CPU ms a task: own / PostgreSQL + RabbitMQ | cores busy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rounds in results.items():
        rates = [r["throughput"] for r in rounds]
        p50 = statistics.median(r["e2e_p50_ms"] or 0 for r in rounds)
        p99 = statistics.median(r["e2e_p99_ms"] or 0 for r in rounds)
        by_loop, by_dramatiq = ratio(results, name, "loop"), ratio(results, name, "dramatiq")
        lines.append(
            f"| {name} | {setups[name]} | {statistics.median(rates):,.0f}"
            f" ({min(rates):,.0f}-{max(rates):,.0f}) | {_fmt_ms(p50)} / {_fmt_ms(p99)}"
            f" | {sum(r['multi_attempt'] for r in rounds)}"
            f" | {'-' if by_loop is None else f'{by_loop:.2f}'}"
            f" | {'-' if by_dramatiq is None else f'{by_dramatiq:.2f}'}"
            f" | {_cpu(rounds, 'own')} / {_cpu(rounds, 'servers')} | {_busy(rounds)} |"
        )
    return "\n".join(lines)


@contextmanager
def contenders(args: argparse.Namespace) -> Iterator[tuple[dict[str, Peer], Fleet | None]]:
    """The peers and the taskfleet fleet, started once; stopped and cleaned up at the end."""
    settings = Settings()
    dsn = with_database(settings.database_url, f"taskfleet_peers_{uuid.uuid4().hex[:8]}")
    tag = uuid.uuid4().hex[:8]
    peers: dict[str, Peer] = {}
    with ExitStack() as stack:
        asyncio.run(make_database(dsn))
        stack.callback(lambda: asyncio.run(cleanup(list(peers.values()), dsn, settings.amqp_url)))
        for name in args.peers:
            peers[name] = start_peer(name, dsn, settings.amqp_url, tag)
            stack.callback(stop_peer, peers[name])
        fleet = start_fleet(1, None) if args.via else None
        if fleet is not None:
            stack.callback(stop_fleet, fleet)
        yield peers, fleet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="tasks per contender per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", nargs="*", choices=sorted(KINDS), default=list(KINDS))
    parser.add_argument("--via", nargs="*", choices=["amqp", "api"], default=["amqp", "api"])
    parser.add_argument("--json", action="store_true", help="every round as a JSON line too")
    args = parser.parse_args()

    started = datetime.now(UTC)
    names = [*args.peers, *(f"taskfleet {via}" for via in args.via)]
    results: Results = {name: [] for name in names}
    settings = Settings()
    servers = server_pids(settings.database_url, settings.amqp_url)
    with contenders(args) as (peers, fleet):
        for i in range(args.rounds):
            for name in contender_order(names, i):
                own = [peers[name].process.pid] if name in peers else [p.pid for p in fleet.procs]  # type: ignore[union-attr]
                before, own_before = cpu_of(servers), sum(map(tree_cpu_s, own))
                if name in peers:
                    with CoreSampler() as cores:
                        figures = asyncio.run(run_round(peers[name], args.n))
                    figures["cores_busy_pct"] = cores.busy_pct(figures.get("window"))
                else:
                    assert fleet is not None
                    via = name.split()[1]
                    figures = run_bench(fleet.env, args.n, via, fleet.url, fleet.ours)
                after, own_after = cpu_of(servers), sum(map(tree_cpu_s, own))
                served = sum(after.values()) - sum(before.values())
                figures["cpu_ms_a_task"] = {"own": (own_after - own_before) * 1000 / args.n,
                                            "servers": served * 1000 / args.n}  # fmt: skip
                results[name].append(figures)
                print(f"round {i + 1} {name}: {figures['throughput']:,.0f} task/s", flush=True)
                if args.json:
                    print(json.dumps({"round": i + 1, "contender": name, **figures}), flush=True)
    setups = {name: kind.setup for name, kind in KINDS.items()}
    setups |= {f"taskfleet {via}": f"{TASKFLEET_SETUP}, via {via}" for via in args.via}
    print(
        f"\nW1, N = {args.n:,}, {args.rounds} rounds, started {started:%Y-%m-%d %H:%M} UTC;"
        " p50/p99 from the publish confirm (via api: from the row's"
        " creation, just before the 202) to completed_at\n"
    )
    print(table(results, setups), flush=True)


if __name__ == "__main__":
    main()

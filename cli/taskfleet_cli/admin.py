"""Operator commands: `taskfleet tasks`, `task ID`, `stats`, `queues`, `workers`,
`dlq list|replay|purge QUEUE`."""

import argparse
import dataclasses
from typing import Any
from uuid import UUID

import orjson
from rich.console import Console
from rich.table import Table

from taskfleet.core import jsonx
from taskfleet.core.settings import Settings, parse_duration
from taskfleet.data import operations, queues, stats
from taskfleet.runtime import registry
from taskfleet.runtime.kernel import open_kernel
from taskfleet.security.crypto import Keyring
from taskfleet.store.pool import create_pool
from taskfleet.store.tenancy import audited, cli_actor

console = Console()


async def show_tasks(settings: Settings, args: argparse.Namespace) -> int:
    """Print tasks, newest first, as a table; an operator's read across users, audited."""
    wanted = args.status  # `active` expanded already (parser._statuses)
    pool = await create_pool(
        settings.database_url, size=1, statement_cache=settings.database_statement_cache
    )
    try:
        db = audited(pool, cli_actor(), "cli_tasks", user_id=args.user, status=wanted)
        page = await operations.list_tasks(db, user_id=args.user, status=wanted, limit=args.limit)
    finally:
        await pool.close()
    if args.json:
        print(jsonx.dumps(page.tasks).decode())
        return 0
    table = Table("id", "type", "user", "status", "progress", "attempts", "created")
    for t in page.tasks:
        table.add_row(
            str(t["id"]),
            t["type"],
            t["user_id"],
            t["status"],
            f"{t['progress']:.0%}",
            f"{t['attempts']}/{t['max_attempts']}",
            t["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
    return 0


async def show_stats(settings: Settings, args: argparse.Namespace) -> int:
    """Print a window's task statistics, every user's or --user's (an audited operator read),
    as a table or, with --json, as GET /api/stats answers them. Exit 2 for a bad --window."""
    try:
        window_s = parse_duration(args.window)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    pool = await create_pool(
        settings.database_url, size=1, statement_cache=settings.database_statement_cache
    )
    try:
        db = audited(pool, cli_actor(), "cli_stats", user_id=args.user, window=args.window)
        found = await stats.task_stats(db, user_id=args.user, window_s=window_s)
    finally:
        await pool.close()
    if args.json:
        print(jsonx.dumps(found).decode())
        return 0
    console.print(f"tasks created since {found['since']:%Y-%m-%d %H:%M:%S %Z}"
                  f" ({args.user or 'every user'})")  # fmt: skip
    table = Table("type", "tasks", "by status", "success", "wait p50/p95 s", "run p50/p95 s")
    for name, summary in [*found["by_type"].items(), ("all", found)]:
        table.add_row(name, *_stats_cells(summary))
    console.print(table)
    return 0


def _stats_cells(summary: dict[str, Any]) -> list[str]:
    def pair(q: dict[str, float | None]) -> str:
        return " / ".join("-" if v is None else f"{v:.3g}" for v in (q["p50"], q["p95"]))

    rate = summary["success_rate"]
    return [
        str(summary["total"]),
        ", ".join(f"{k} {v}" for k, v in summary["by_status"].items()),
        "-" if rate is None else f"{rate:.1%}",
        pair(summary["wait_s"]),
        pair(summary["duration_s"]),
    ]


async def show_task(settings: Settings, args: argparse.Namespace) -> int:
    """Print one task, with its chat message, as JSON opened as its owner reads it. Exit 2
    for a malformed id, 1 when there is no such task."""
    try:
        task_id = UUID(args.id)
    except ValueError:
        console.print(f"[red]not a task id: {args.id}[/red]")
        return 2
    pool = await create_pool(
        settings.database_url, size=1, statement_cache=settings.database_statement_cache
    )
    try:
        db = audited(pool, cli_actor(), "cli_task", task_id=str(task_id))
        task = await operations.task_with_message(db, task_id)
    finally:
        await pool.close()
    if task is None:
        console.print(f"[red]no task {task_id}[/red]")
        return 1
    # An operator with the keys reads what the owner would (docs/security.md).
    task = operations.reveal_task(task, Keyring.from_settings(settings))
    print(orjson.dumps(orjson.loads(jsonx.dumps(task)), option=orjson.OPT_INDENT_2).decode())
    return 0


async def show_queues(settings: Settings, args: argparse.Namespace) -> int:
    """Print every queue's ready messages and consumers."""
    async with open_kernel(settings, name="cli", relay=False) as kernel:
        found = await queues.depths(kernel)
    if args.json:
        print(jsonx.dumps([dataclasses.asdict(d) for d in found]).decode())
        return 0
    table = Table("queue", "messages", "consumers")
    for d in found:
        table.add_row(d.name, str(d.messages), str(d.consumers))
    console.print(table)
    return 0


async def show_workers(settings: Settings, args: argparse.Namespace) -> int:
    """Print the worker processes: live, lost (tasks at risk); stopped ones with --all."""
    pool = await create_pool(
        settings.database_url, size=1, statement_cache=settings.database_statement_cache
    )
    try:
        found = await registry.list_workers(pool, include_gone=args.all)
    finally:
        await pool.close()
    if args.json:
        print(jsonx.dumps(found).decode())
        return 0
    table = Table(
        "worker", "status", "host", "pid", "heartbeat", "memory", "paused", "in flight",
        "at risk", "id",
    )  # fmt: skip
    for w in found:
        rss = w.get("rss_bytes")
        table.add_row(
            w["worker"],
            w["status"],
            w["host"],
            str(w["pid"]),
            f"{w['heartbeat_age_s']:.1f}s ago",
            f"{rss >> 20} MiB" if rss is not None else "-",
            ", ".join(w.get("paused") or {}) or "-",
            str(len(w["inflight"])),
            " ".join(str(t) for t in w["at_risk"]) or "-",
            str(w["id"]),
        )
    console.print(table)
    return 0


async def dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    """List (left in place), replay or purge a queue's dead letters; exit 2 for an
    unknown queue. Only a replay runs the outbox relay: it is what publishes again."""
    try:
        queues.work_queue(args.queue)
    except queues.UnknownQueue as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    async with open_kernel(settings, name="cli", relay=args.action == "replay") as kernel:
        if args.action == "list":
            for letter in await queues.peek_dead_letters(kernel, args.queue, args.limit):
                print(jsonx.dumps(letter).decode())
        elif args.action == "replay":
            replayed, skipped = await queues.replay_dead_letters(
                kernel, args.queue, actor=cli_actor(), limit=args.limit
            )
            console.print(f"replayed {replayed}, left {skipped} in the dead-letter queue")
        else:
            purged = await queues.purge_dead_letters(kernel, args.queue)
            console.print(f"purged {purged} dead letters")
    return 0

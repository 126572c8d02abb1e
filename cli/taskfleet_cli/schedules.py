"""`taskfleet schedules`: recurring tasks through the API (docs/scheduling.md#schedules), with
the client and its token like the other remote commands (taskfleet_cli.remote): `list` (the
default), `create`, `show`, `pause`, `resume`, `delete`."""

import argparse
import json
import sys
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table

from taskfleet.client import Schedule, Taskfleet
from taskfleet.core.settings import Settings
from taskfleet_cli.remote import client

Action = Callable[[Taskfleet, argparse.Namespace], Awaitable[int]]


def _print(schedule: Schedule) -> None:
    print(schedule.model_dump_json(indent=2))


def _when(s: Schedule) -> str:
    return f"cron {s.cron} ({s.timezone})" if s.cron else f"every {s.interval_s}s"


def _time(moment: object) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


async def _list(tf: Taskfleet, args: argparse.Namespace) -> int:
    found = await tf.schedules.list(user_id=args.user, limit=args.limit)
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in found], indent=2))
        return 0
    # The id and the "when" whole (the id to copy into `show`); the rest share what is left.
    table = Table("task", "state", "next run", "last run")
    table.add_column("when", no_wrap=True)
    table.add_column("id", no_wrap=True, min_width=36)
    for s in found:
        table.add_row(
            f"{s.user_id}/{s.task.chat_id}: {s.task.content[:30]}",
            "on" if s.enabled else "paused", _time(s.next_run_at), _time(s.last_run_at),
            _when(s), str(s.id),
        )  # fmt: skip
    Console(file=sys.stdout).print(table)
    return 0


async def _create(tf: Taskfleet, args: argparse.Namespace) -> int:
    schedule = await tf.schedules.create(
        args.chat, args.text, cron=args.cron, interval_s=args.every, timezone=args.timezone,
        missed=args.missed, enabled=not args.paused, user_id=args.user,
    )  # fmt: skip
    _print(schedule)
    return 0


async def _show(tf: Taskfleet, args: argparse.Namespace) -> int:
    _print(await tf.schedules.get(args.id))
    return 0


async def _pause(tf: Taskfleet, args: argparse.Namespace) -> int:
    _print(await tf.schedules.pause(args.id))
    return 0


async def _resume(tf: Taskfleet, args: argparse.Namespace) -> int:
    _print(await tf.schedules.resume(args.id))
    return 0


async def _delete(tf: Taskfleet, args: argparse.Namespace) -> int:
    await tf.schedules.delete(args.id)
    print(f"deleted {args.id}", file=sys.stderr)
    return 0


ACTIONS: dict[str, Action] = {
    "list": _list, "create": _create, "show": _show, "pause": _pause, "resume": _resume,
    "delete": _delete,
}  # fmt: skip


async def run_schedules(settings: Settings, args: argparse.Namespace) -> int:
    """Run the schedules action (`list` when none is named); exit 1 with the API's refusal."""
    action = args.action or "list"
    if action == "list":  # bare `taskfleet schedules`: the listing's own options' defaults
        args.user, args.limit, args.json = (
            getattr(args, "user", None), getattr(args, "limit", 100), getattr(args, "json", False),
        )  # fmt: skip
    async with client(settings, args) as tf:
        return await ACTIONS[action](tf, args)

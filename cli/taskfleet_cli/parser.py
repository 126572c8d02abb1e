"""The arguments of every `taskfleet` command (taskfleet_cli.main runs them)."""

import argparse
import os
from collections.abc import Callable
from typing import TypeVar

from taskfleet.core.constants import Status, statuses
from taskfleet.security.auth import SCOPES

N = TypeVar("N", int, float)

# Worker name -> the module whose `main(settings, concurrency)` runs it. `taskfleet up` runs
# one of each.
WORKERS: dict[str, str] = {
    "chat": "chat_worker.main",
    "camera": "camera_worker.main",
    "doc": "doc_worker.main",
    "tool": "tool_worker.main",
}


def _statuses(text: str) -> list[str]:
    try:
        return statuses(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a status: {text}") from None


def _at_least(least: N, kind: Callable[[str], N]) -> Callable[[str], N]:
    """An argument type: a number of `kind`, `least` or more."""

    def parse(text: str) -> N:
        value = kind(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least:g} (got {text})")
        return value

    return parse


def remote(command: argparse.ArgumentParser) -> None:
    """`--url` and `--token`: the command goes through the API, as whoever the token names."""
    command.add_argument(
        "--url",
        default=os.environ.get("TASKFLEET_URL"),
        help="API base URL (TASKFLEET_URL; default http://API_HOST:API_PORT)",
    )
    command.add_argument(
        "--token",
        default=os.environ.get("TASKFLEET_TOKEN"),
        help="bearer token (TASKFLEET_TOKEN; default: an admin token made with this"
        " machine's TASKFLEET_JWT_SECRET)",
    )


def add_schedules(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`taskfleet schedules [list|create|show|pause|resume|delete]`, through the API."""
    schedules = sub.add_parser(
        "schedules", help="recurring tasks, through the API: list (the default), create, show,"
        " pause, resume, delete",
    )  # fmt: skip
    remote(schedules)
    actions = schedules.add_subparsers(dest="action")
    listing = actions.add_parser("list", help="schedules, newest first")
    listing.add_argument("--user", help="one user's (service or admin token)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="a JSON array, not a table")
    create = actions.add_parser("create", help="post TEXT to a chat at every tick")
    create.add_argument("text")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="5 fields, or 6 with seconds last; @daily...")
    when.add_argument("--every", type=int, help="an interval, in seconds")
    create.add_argument("--timezone", help="the cron's IANA time zone (default UTC)")
    create.add_argument("--missed", choices=["skip", "run_once"], help="default skip")
    create.add_argument("--chat", default="schedules", help="the chat_id of every run")
    create.add_argument("--paused", action="store_true", help="create it paused")
    create.add_argument("--user", help="the user to act for (service or admin token)")
    remote(listing)
    remote(create)
    for name, what in (
        ("show", "one schedule as JSON"),
        ("pause", "no run until resumed"),
        ("resume", "run again from the next tick"),
        ("delete", "no more runs (the runs made stay)"),
    ):
        action = actions.add_parser(name, help=what)
        action.add_argument("id")
        remote(action)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; its names are the keys of main.COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="taskfleet", description="taskfleet: a durable task fleet for AI-agent backends"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="create the database if missing and apply migrations")
    migrate.add_argument(
        "--status",
        action="store_true",
        help="list migrations (applied, pending) and function files (current,"
        " changed, new) without changing anything",
    )

    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)

    worker = sub.add_parser("worker", help="run one worker")
    worker.add_argument("name", choices=sorted(WORKERS))
    worker.add_argument(
        "--concurrency",
        type=int,
        help="tasks at once (default WORKER_CONCURRENCY, else the queue's own: chat 64, tool 8,"
        " doc 2, camera 4)",
    )

    sub.add_parser("up", help="development fleet: migrate, API and workers, restart on crash")

    token = sub.add_parser("token", help="print a signed bearer token")
    token.add_argument("user")
    token.add_argument("--scope", choices=SCOPES, default="user")
    token.add_argument("--ttl", default="1h")

    link = sub.add_parser(
        "console-link", help="print a console link that signs a browser in once (60 s)"
    )
    link.add_argument("--user", default="demo")
    link.add_argument("--scope", choices=SCOPES, default="user")
    link.add_argument("--ttl", default="12h", help="how long the browser's token lasts")

    revoke = sub.add_parser("revoke", help="refuse a token from now until it expires")
    revoke.add_argument("token")
    revoke.add_argument("--reason", default="")

    submit = sub.add_parser("submit", help="post a chat message through the API")
    submit.add_argument("text")
    submit.add_argument("--user", default="demo")
    submit.add_argument("--chat", default="cli")
    submit.add_argument("--priority", choices=["high", "normal", "low"], help="its level")
    submit.add_argument("--wait", action="store_true", help="follow it and print the reply")
    submit.add_argument("--timeout", type=float, default=120.0)
    remote(submit)

    tasks = sub.add_parser(
        "tasks", help="list tasks, newest first (through the API with --url or --token)"
    )
    tasks.add_argument("--user")
    tasks.add_argument(
        "--status",
        type=_statuses,
        help="a status, several separated by commas, or active: "
        + ", ".join(s.value for s in Status),
    )
    tasks.add_argument("--limit", type=int, default=50)
    tasks.add_argument("--json", action="store_true", help="a JSON array, not a table")
    remote(tasks)

    stats = sub.add_parser("stats", help="task counts, success rate, wait and run times")
    stats.add_argument("--user", help="one user's tasks (default: every user's)")
    stats.add_argument("--window", default="24h", help="tasks created since: 90m, 24h, 7d...")
    stats.add_argument("--json", action="store_true", help="as GET /api/stats answers")

    task = sub.add_parser(
        "task", help="show one task as JSON (through the API with --url or --token)"
    )
    task.add_argument("id")
    remote(task)

    for name, what in (
        ("cancel", "cancel a task"),
        ("retry", "run a failed or cancelled task again"),
        ("resume", "run a failed or cancelled task again from its checkpoint"),
        ("restart", "run a failed or cancelled task again from scratch"),
        ("delete", "delete a finished task"),
    ):
        action = sub.add_parser(name, help=f"{what}, through the API")
        action.add_argument("id")
        remote(action)
    wait = sub.add_parser("wait", help="wait for a task to end and print it, through the API")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, help="seconds (default: until it ends)")
    remote(wait)

    add_schedules(sub)

    queues = sub.add_parser("queues", help="queue depths, consumers, dead letters")
    queues.add_argument("--json", action="store_true", help="a JSON array, not a table")
    workers = sub.add_parser("workers", help="worker processes: live, lost (tasks at risk)")
    workers.add_argument("--all", action="store_true", help="stopped workers too")
    workers.add_argument("--json", action="store_true", help="a JSON array, not a table")

    dlq = sub.add_parser("dlq", help="operate a dead-letter queue")
    dlq.add_argument("action", choices=["list", "replay", "purge"])
    dlq.add_argument(
        "queue", help="chat_tasks, tool_executions, document_processing, camera_analysis"
    )
    dlq.add_argument("--limit", type=int, default=100)

    bench = sub.add_parser("bench", help="workload W1 against a running fleet: one JSON line")
    bench.add_argument("--n", type=int, default=3000)
    bench.add_argument("--via", choices=["amqp", "api"], default="amqp")
    bench.add_argument("--url", help="API base URL for --via api (several: comma-separated)")
    bench.add_argument("--timeout", type=float, default=600.0)
    bench.add_argument(
        "--watch",
        action="store_true",
        help="keep an all-users WebSocket open on the API for the run and count"
        " the events it receives (the cost of a live listener)",
    )

    cleanup = sub.add_parser("cleanup", help="retention: delete old terminal tasks in batches")
    cleanup.add_argument("--older-than", help="e.g. 30d, 12h (default RETENTION_OLDER_THAN)")
    cleanup.add_argument(
        "--batch-size", type=_at_least(1, int), help="default RETENTION_BATCH_SIZE (500)"
    )
    cleanup.add_argument(
        "--pause-ratio",
        type=_at_least(0, float),
        default=None,
        help="pause this many times each batch's duration after it"
        " (default RETENTION_PAUSE_RATIO, 3; 0: no pause)",
    )

    keygen = sub.add_parser("keygen", help="print a new kid:key entry for ENCRYPTION_KEYS")
    keygen.add_argument("kid", nargs="?", default="k1", help="the key id (default k1)")

    rotate = sub.add_parser("rotate-key", help="re-seal values of older keys under the first")
    rotate.add_argument("--batch-size", type=int, default=500)
    return parser

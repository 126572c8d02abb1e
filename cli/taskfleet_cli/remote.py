"""The user commands that go through the API with `taskfleet.client`, not the database, so
that whoever holds a token (and not the server's secret) can run them from anywhere:
`cancel`, `retry`, `resume`, `restart`, `delete`, `wait`, and `tasks` / `task` given `--url`
or `--token`.

`--url` / TASKFLEET_URL (default http://API_HOST:API_PORT) and `--token` / TASKFLEET_TOKEN;
without a token, on a machine that holds TASKFLEET_JWT_SECRET, an admin token of this
machine's account is made, as `taskfleet submit` does."""

import argparse
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from taskfleet.client import Task, Taskfleet, TaskfleetError
from taskfleet.core.errors import ConfigError
from taskfleet.core.settings import Settings
from taskfleet.security.auth import token_for
from taskfleet.store.tenancy import cli_actor

console = Console(stderr=True)
# `taskfleet wait` when the time was up before the task ended (as timeout(1) does).
EXIT_TIMEOUT = 124


def is_remote(args: argparse.Namespace) -> bool:
    """Whether a listing goes through the API: a URL or a token was given (or their
    TASKFLEET_URL, TASKFLEET_TOKEN, the arguments' defaults)."""
    return bool(args.url or args.token)


def endpoint(settings: Settings, args: argparse.Namespace) -> tuple[str, str]:
    """The API's base URL and the bearer token to use."""
    url = args.url or f"http://{settings.api_host}:{settings.api_port}"
    if args.token:
        return url, str(args.token)
    try:
        return url, token_for(settings, cli_actor(), scope="admin")
    except ConfigError:
        raise ConfigError(
            "no token: pass --token or set TASKFLEET_TOKEN (or run where"
            " TASKFLEET_JWT_SECRET is set)"
        ) from None


@asynccontextmanager
async def client(settings: Settings, args: argparse.Namespace) -> AsyncIterator[Taskfleet]:
    """The client, with the API's refusals as one line and exit code 1 (SystemExit)."""
    url, token = endpoint(settings, args)
    try:
        async with Taskfleet(url, token) as tf:
            yield tf
    except TaskfleetError as exc:
        raise SystemExit(f"taskfleet: {exc}") from None
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise SystemExit(f"taskfleet: cannot reach the API at {url}: {exc}") from None


def print_task(task: Task) -> None:
    """One task as JSON on stdout."""
    print(task.model_dump_json(indent=2))


# What `taskfleet cancel|retry|resume|restart|delete ID` asks of the API.
ACTIONS: dict[str, Callable[[Taskfleet, str], Awaitable[BaseModel]]] = {
    "cancel": Taskfleet.cancel,
    "retry": Taskfleet.retry,
    "resume": Taskfleet.resume,
    "restart": Taskfleet.restart,
    "delete": Taskfleet.delete,
}


async def run_action(settings: Settings, args: argparse.Namespace) -> int:
    """One action on a task, its answer as JSON; exit 1 (with the API's reason, e.g. the 409
    of a task that is not failed) when it is refused."""
    async with client(settings, args) as tf:
        done = await ACTIONS[args.command](tf, args.id)
    print(done.model_dump_json(indent=2))
    return 0


async def run_wait(settings: Settings, args: argparse.Namespace) -> int:
    """Wait for the task to end and print it: exit 0 completed, 1 failed or cancelled,
    124 when --timeout passed first."""
    async with client(settings, args) as tf:
        task = await tf.wait(args.id, args.timeout)
    print_task(task)
    if not task.terminal:
        console.print(f"[yellow]task {task.id} still {task.status} after {args.timeout}s[/yellow]")
        return EXIT_TIMEOUT
    return 0 if task.status == "completed" else 1


async def run_task(settings: Settings, args: argparse.Namespace) -> int:
    """One task through the API, as JSON."""
    async with client(settings, args) as tf:
        print_task(await tf.get(args.id))
    return 0


async def run_tasks(settings: Settings, args: argparse.Namespace) -> int:
    """The tasks the token may list (a user's with --user), newest first, up to --limit."""
    found: list[Task] = []
    async with client(settings, args) as tf:
        async for task in tf.list(
            status=args.status, user_id=args.user, page_size=min(args.limit, 200)
        ):
            found.append(task)
            if len(found) >= args.limit:
                break
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in found], indent=2))
        return 0
    table = Table("id", "type", "user", "status", "progress", "attempts", "created")
    for t in found:
        table.add_row(
            str(t.id), t.type, t.user_id, t.status, f"{t.progress:.0%}",
            f"{t.attempts}/{t.max_attempts}", t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    Console(file=sys.stdout).print(table)
    return 0

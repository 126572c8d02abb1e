"""The one console script, `taskfleet` (DESIGN.md §2). Each command is a small function."""

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from taskfleet.core.constants import Status
from taskfleet.core.errors import ConfigError, MemoryExhausted, StartupError
from taskfleet.core.logging import configure_logging
from taskfleet.core.settings import Settings
from taskfleet.security.auth import SCOPES, AuthError, parse_ttl, token_for, verify_token
from taskfleet_cli.configs import settings_class

# Worker name -> the module whose `main(settings, concurrency)` runs it. `taskfleet up` runs
# one of each.
WORKERS: dict[str, str] = {
    "chat": "chat_worker.main",
    "camera": "camera_worker.main",
    "doc": "doc_worker.main",
    "tool": "tool_worker.main",
}


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we run
        return asyncio.run(coro)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet.store.migrate import migrate, status

    if args.status:
        for f in run_async(status(settings.database_url)):
            print(f"{f.kind:<9} {f.name:<24} {f.state}")
        return 0
    applied = run_async(migrate(settings.database_url))
    for what, names in (("migrations", applied.migrations), ("functions", applied.functions)):
        print(f"{what} applied: {', '.join(names) if names else 'none (up to date)'}")
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from fleet_api.main import main as api_main
    from fleet_api.settings import ApiSettings

    host, port = args.host or settings.api_host, args.port or settings.api_port
    run_async(api_main(ApiSettings.of(settings), host, port))
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency: must be at least 1 (got {args.concurrency})")
    from taskfleet.runtime.memguard import EXIT_MEMORY

    service = importlib.import_module(WORKERS[args.name])
    try:
        run_async(service.main(settings, args.concurrency))
    except MemoryExhausted as exc:
        print(f"taskfleet: worker stopped: {exc}; start it again", file=sys.stderr)
        return EXIT_MEMORY
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.up import run_fleet

    return int(run_async(run_fleet(settings, workers=list(WORKERS))))


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    print(token_for(settings, args.user, scope=args.scope, ttl_s=parse_ttl(args.ttl)))
    return 0


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet.store.revocation import revoke_token

    try:
        who = verify_token(settings.require_jwt_secret(), args.token, issuer=settings.jwt_issuer,
                           audience=settings.jwt_audience)  # fmt: skip
    except AuthError as exc:
        raise ConfigError(f"token: {exc} (an expired token needs no revoking)") from None
    run_async(revoke_token(settings.database_url, who, args.reason))
    print(f"revoked token {who.jti} of {who.user_id}; every API refuses it within seconds")
    return 0


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.submit import submit

    return int(run_async(submit(settings, args)))


def cmd_tasks(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.admin import show_tasks

    return int(run_async(show_tasks(settings, args)))


def cmd_task(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.admin import show_task

    return int(run_async(show_task(settings, args)))


def cmd_queues(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.admin import show_queues

    return int(run_async(show_queues(settings, args)))


def cmd_workers(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.admin import show_workers

    return int(run_async(show_workers(settings, args)))


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.admin import dead_letters

    return int(run_async(dead_letters(settings, args)))


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet_cli.bench import run_bench

    if args.n < 1:
        raise ConfigError(f"--n: must be at least 1 (got {args.n})")
    return int(run_async(run_bench(settings, args)))


def cmd_cleanup(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet.core.settings import parse_duration
    from taskfleet.data.retention import run_cleanup

    try:
        older_than_s = parse_duration(args.older_than) if args.older_than else None
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be at least 1 (got {args.batch_size})")
    older_than_s = older_than_s or settings.retention_older_than_s
    result = run_async(run_cleanup(settings, older_than_s, batch_size=args.batch_size))
    done = f"deleted {result.deleted} tasks finished before {result.cutoff:%Y-%m-%d %H:%M:%S %Z}"
    print(f"cleanup: {done} ({result.batches} batches)")
    return 0


def cmd_keygen(_: Settings, args: argparse.Namespace) -> int:
    from taskfleet.security.crypto import new_key

    print(new_key(args.kid))
    return 0


def cmd_rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    from taskfleet.data.rotation import rotate
    from taskfleet.security.crypto import Keyring

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be at least 1 (got {args.batch_size})")
    keyring = Keyring.from_settings(settings)
    counts = run_async(rotate(settings, keyring, batch=args.batch_size))
    print(f"rotate-key: current key {keyring.kid!r}")
    for count in counts:
        print(f"  {count.line()}")
    left = sum(c.left for c in counts)
    if left:
        print(f"rotate-key: {left} values left under older keys: keep them in ENCRYPTION_KEYS"
              " and run it again")  # fmt: skip
    return 0 if left == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskfleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    migrate = sub.add_parser("migrate", help="create the database if missing and apply migrations")
    migrate.add_argument("--status", action="store_true",
                         help="list migrations (applied, pending) and function files (current,"
                         " changed, new) without changing anything")  # fmt: skip

    api = sub.add_parser("api", help="run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)

    worker = sub.add_parser("worker", help="run one worker")
    worker.add_argument("name", choices=sorted(WORKERS))
    worker.add_argument("--concurrency", type=int, default=8)

    sub.add_parser("up", help="development fleet: migrate, API and workers, restart on crash")

    token = sub.add_parser("token", help="print a signed bearer token")
    token.add_argument("user")
    token.add_argument("--scope", choices=SCOPES, default="user")
    token.add_argument("--ttl", default="1h")

    revoke = sub.add_parser("revoke", help="refuse a token from now until it expires")
    revoke.add_argument("token")
    revoke.add_argument("--reason", default="")

    submit = sub.add_parser("submit", help="post a chat message through the API")
    submit.add_argument("text")
    submit.add_argument("--user", default="demo")
    submit.add_argument("--chat", default="cli")
    submit.add_argument("--wait", action="store_true", help="follow it and print the reply")
    submit.add_argument("--url", help="API base URL (default http://API_HOST:API_PORT)")
    submit.add_argument("--timeout", type=float, default=120.0)

    tasks = sub.add_parser("tasks", help="list tasks, newest first")
    tasks.add_argument("--user")
    tasks.add_argument("--status", choices=[s.value for s in Status])
    tasks.add_argument("--limit", type=int, default=50)

    task = sub.add_parser("task", help="show one task as JSON")
    task.add_argument("id")

    sub.add_parser("queues", help="queue depths, consumers, dead letters")
    workers = sub.add_parser("workers", help="worker processes: live, lost (tasks at risk)")
    workers.add_argument("--all", action="store_true", help="stopped workers too")

    dlq = sub.add_parser("dlq", help="operate a dead-letter queue")
    dlq.add_argument("action", choices=["list", "replay", "purge"])
    dlq.add_argument(
        "queue", help="chat_tasks, tool_executions, document_processing, camera_analysis"
    )
    dlq.add_argument("--limit", type=int, default=100)

    bench = sub.add_parser("bench", help="workload W1 against a running fleet: one JSON line")
    bench.add_argument("--n", type=int, default=3000)
    bench.add_argument("--via", choices=["amqp", "api"], default="amqp")
    bench.add_argument("--url", help="API base URL for --via api")
    bench.add_argument("--timeout", type=float, default=600.0)
    bench.add_argument("--watch", action="store_true",
                       help="keep an all-users WebSocket open on the API for the run and count"
                       " the events it receives (the cost of a live listener)")  # fmt: skip

    cleanup = sub.add_parser("cleanup", help="retention: delete old terminal tasks in batches")
    cleanup.add_argument("--older-than", help="e.g. 30d, 12h (default RETENTION_OLDER_THAN)")
    cleanup.add_argument("--batch-size", type=int, default=500)

    keygen = sub.add_parser("keygen", help="print a new kid:key entry for ENCRYPTION_KEYS")
    keygen.add_argument("kid", nargs="?", default="k1", help="the key id (default k1)")

    rotate = sub.add_parser("rotate-key", help="re-seal values of older keys under the first")
    rotate.add_argument("--batch-size", type=int, default=500)
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "api": cmd_api,
    "worker": cmd_worker,
    "up": cmd_up,
    "token": cmd_token,
    "submit": cmd_submit,
    "revoke": cmd_revoke,
    "cleanup": cmd_cleanup,
    "tasks": cmd_tasks,
    "task": cmd_task,
    "queues": cmd_queues,
    "workers": cmd_workers,
    "dlq": cmd_dlq,
    "bench": cmd_bench,
    "keygen": cmd_keygen,
    "rotate-key": cmd_rotate_key,
}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_class(args).load()
        configure_logging(settings.log_format, settings.log_level)
        code = COMMANDS[args.command](settings, args)
    except ConfigError as exc:
        print(f"taskfleet: configuration error: {exc}", file=sys.stderr)
        code = 2
    except StartupError as exc:
        print(f"taskfleet: cannot start: {exc}", file=sys.stderr)
        code = 3
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)

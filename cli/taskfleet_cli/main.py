"""The one console script, `taskfleet`: each command a small function (its arguments are in
taskfleet_cli.parser)."""

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import argcomplete

from taskfleet.core.errors import ConfigError, MemoryExhausted, StartupError
from taskfleet.core.logging import configure_logging
from taskfleet.core.settings import Settings
from taskfleet.core.tracing import configure_tracing
from taskfleet.security.auth import AuthError, parse_ttl, token_for, verify_token
from taskfleet_cli.configs import settings_class, worker_slots
from taskfleet_cli.parser import WORKERS, build_parser


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` to its end on a fresh event loop (uvloop's) and give back its result."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on every platform we run
        return asyncio.run(coro)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Create the database if missing, apply pending migrations and changed SQL function
    files; with --status, list them and change nothing."""
    from taskfleet.store.migrate import migrate, status

    if args.status:
        for f in run_async(status(settings.direct_database_url)):
            print(f"{f.kind:<9} {f.name:<24} {f.state}")
        return 0
    applied = run_async(migrate(settings.direct_database_url))
    for what, names in (("migrations", applied.migrations), ("functions", applied.functions)):
        print(f"{what} applied: {', '.join(names) if names else 'none (up to date)'}")
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the API until SIGTERM/SIGINT; --host and --port override API_HOST and API_PORT."""
    from fleet_api.main import main as api_main
    from fleet_api.settings import ApiSettings

    host, port = args.host or settings.api_host, args.port or settings.api_port
    run_async(api_main(ApiSettings.of(settings), host, port))
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run one worker until it is stopped. Exit code EXIT_MEMORY (75) when its memory
    guard stopped it, so that whatever supervises it starts a fresh one."""
    slots = worker_slots(settings, args.name, args.concurrency)
    from taskfleet.runtime.memguard import EXIT_MEMORY

    service = importlib.import_module(WORKERS[args.name])
    try:
        run_async(service.main(settings, slots))
    except MemoryExhausted as exc:
        print(f"taskfleet: worker stopped: {exc}; start it again", file=sys.stderr)
        return EXIT_MEMORY
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """Run the development fleet (taskfleet_cli.up) until Ctrl-C or SIGTERM."""
    from taskfleet_cli.up import run_fleet

    return int(run_async(run_fleet(settings, workers=list(WORKERS))))


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    """Print a bearer token for the user, of --scope, valid for --ttl (e.g. 30m, 1h, 7d)."""
    print(token_for(settings, args.user, scope=args.scope, ttl_s=parse_ttl(args.ttl)))
    return 0


def cmd_console_link(settings: Settings, args: argparse.Namespace) -> int:
    """Print a console link that signs a browser in once, within a minute, as --user."""
    from taskfleet_cli.up import print_console_link

    return int(run_async(print_console_link(settings, args.user, args.scope, parse_ttl(args.ttl))))


def cmd_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """Refuse a token from now until it expires (the deny-list every API replica reads).

    A token that does not verify, an expired one included, is a ConfigError: nothing to revoke."""
    from taskfleet.store.revocation import revoke_token

    try:
        who = verify_token(
            settings.require_jwt_secret(),
            args.token,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except AuthError as exc:
        raise ConfigError(f"token: {exc} (an expired token needs no revoking)") from None
    run_async(revoke_token(settings.direct_database_url, who, args.reason))  # one-shot: no pooler
    print(f"revoked token {who.jti} of {who.user_id}; every API refuses it within seconds")
    return 0


def cmd_submit(settings: Settings, args: argparse.Namespace) -> int:
    """Post a chat message through the API; exit 1 when --wait saw the task end otherwise
    than completed."""
    from taskfleet_cli.submit import submit

    return int(run_async(submit(settings, args)))


def cmd_tasks(settings: Settings, args: argparse.Namespace) -> int:
    """Print tasks, newest first: through the API given --url or --token (as whoever the
    token names), else read from the database directly (an operator's, audited)."""
    from taskfleet_cli import remote
    from taskfleet_cli.admin import show_tasks

    if remote.is_remote(args):
        return int(run_async(remote.run_tasks(settings, args)))
    return int(run_async(show_tasks(settings, args)))


def cmd_stats(settings: Settings, args: argparse.Namespace) -> int:
    """Print task statistics over --window, read from the database directly (no API needed)."""
    from taskfleet_cli.admin import show_stats

    return int(run_async(show_stats(settings, args)))


def cmd_task(settings: Settings, args: argparse.Namespace) -> int:
    """Print one task as JSON: through the API given --url or --token, else from the
    database, its sealed values opened with this machine's keys."""
    from taskfleet_cli import remote
    from taskfleet_cli.admin import show_task

    if remote.is_remote(args):
        return int(run_async(remote.run_task(settings, args)))
    return int(run_async(show_task(settings, args)))


def cmd_remote(settings: Settings, args: argparse.Namespace) -> int:
    """`cancel`, `retry`, `resume`, `restart`, `delete`, `wait` and `schedules`: always through
    the API (taskfleet_cli.remote, taskfleet_cli.schedules)."""
    from taskfleet_cli import remote, schedules

    special = {"wait": remote.run_wait, "schedules": schedules.run_schedules}
    return int(run_async(special.get(args.command, remote.run_action)(settings, args)))


def cmd_queues(settings: Settings, args: argparse.Namespace) -> int:
    """Print every queue's ready messages and consumers, dead-letter queues included."""
    from taskfleet_cli.admin import show_queues

    return int(run_async(show_queues(settings, args)))


def cmd_workers(settings: Settings, args: argparse.Namespace) -> int:
    """Print the worker processes from their heartbeats; stopped ones too with --all."""
    from taskfleet_cli.admin import show_workers

    return int(run_async(show_workers(settings, args)))


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    """List, replay or purge a work queue's dead letters."""
    from taskfleet_cli.admin import dead_letters

    return int(run_async(dead_letters(settings, args)))


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Run workload W1 against a running fleet; exit 1 unless all --n tasks completed."""
    from taskfleet_cli.bench import run_bench

    if args.n < 1:
        raise ConfigError(f"--n: must be at least 1 (got {args.n})")
    return int(run_async(run_bench(settings, args)))


def cmd_cleanup(settings: Settings, args: argparse.Namespace) -> int:
    """Delete terminal tasks finished before --older-than and what hangs off them, in paced
    batches (defaults: RETENTION_OLDER_THAN, RETENTION_BATCH_SIZE, RETENTION_PAUSE_RATIO)."""
    from taskfleet.core.settings import parse_duration
    from taskfleet.data.retention import run_cleanup

    try:
        older_than_s = parse_duration(args.older_than) if args.older_than else None
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    older_than_s = older_than_s or settings.retention_older_than_s
    batch = settings.retention_batch_size if args.batch_size is None else args.batch_size
    pause = settings.retention_pause_ratio if args.pause_ratio is None else args.pause_ratio
    result = run_async(run_cleanup(settings, older_than_s, batch_size=batch, pause_ratio=pause))
    done = f"deleted {result.deleted} tasks finished before {result.cutoff:%Y-%m-%d %H:%M:%S %Z}"
    print(f"cleanup: {done} ({result.batches} batches)")
    return 0


def cmd_keygen(_: Settings, args: argparse.Namespace) -> int:
    """Print a new random `kid:key` entry to add to ENCRYPTION_KEYS; nothing is stored."""
    from taskfleet.security.crypto import new_key

    print(new_key(args.kid))
    return 0


def cmd_rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    """Re-seal every value under an older key with the current (first) one.

    Exit 1 while values are left under older keys: those keys must stay in ENCRYPTION_KEYS
    until a run exits 0."""
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
        print(
            f"rotate-key: {left} values left under older keys: keep them in ENCRYPTION_KEYS"
            " and run it again"
        )
    return 0 if left == 0 else 1


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "migrate": cmd_migrate,
    "api": cmd_api,
    "worker": cmd_worker,
    "up": cmd_up,
    "token": cmd_token,
    "submit": cmd_submit,
    "revoke": cmd_revoke,
    "console-link": cmd_console_link,
    "cleanup": cmd_cleanup,
    "tasks": cmd_tasks,
    "task": cmd_task,
    "stats": cmd_stats,
    **dict.fromkeys(("cancel", "retry", "resume", "restart", "delete", "wait"), cmd_remote),
    "schedules": cmd_remote,
    "queues": cmd_queues,
    "workers": cmd_workers,
    "dlq": cmd_dlq,
    "bench": cmd_bench,
    "keygen": cmd_keygen,
    "rotate-key": cmd_rotate_key,
}


def main(argv: list[str] | None = None) -> None:
    """The `taskfleet` console script: run the command, then exit with its code; 2 for a
    configuration error, 3 when a dependency cannot be reached at start, 130 on Ctrl-C."""
    parser = build_parser()
    # Shell completion (`eval "$(register-python-argcomplete taskfleet)"`): when the shell
    # asks, this prints the completions and exits before anything is loaded.
    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        settings = settings_class(args).load()
        # A --json answer is the whole of stdout: the logs go to stderr then.
        quiet = sys.stderr if getattr(args, "json", False) else None
        configure_logging(settings.log_format, settings.log_level, quiet)
        # The name its spans carry (OTEL_SERVICE_NAME wins): taskfleet-api, -chat-worker...
        worker = f"{args.name}-worker" if args.command == "worker" else args.command
        stop_tracing = configure_tracing(f"taskfleet-{worker}")
        try:
            code = COMMANDS[args.command](settings, args)
        finally:
            stop_tracing()  # the spans still batched are sent before the process exits
    except ConfigError as exc:
        print(f"taskfleet: configuration error: {exc}", file=sys.stderr)
        code = 2
    except StartupError as exc:
        print(f"taskfleet: cannot start: {exc}", file=sys.stderr)
        code = 3
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)

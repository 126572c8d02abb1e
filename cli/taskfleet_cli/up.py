"""`taskfleet up`: the development fleet. Migrates, then runs the API and one of each worker
as child processes; restarts a crashed child with backoff; stops all on Ctrl-C/SIGTERM.

The welcome banner (token, example requests, links) is printed once the API answers /readyz
and every worker has registered, so that the children's start-up logs come before it rather
than bury it. What the children log later (one line per task outcome) follows it."""

import asyncio
import contextlib
import os
import secrets
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import structlog

from fleet_api.settings import ApiSettings
from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import RestartBackoff
from taskfleet.runtime import registry
from taskfleet.runtime.kernel import stop_event_on_signals
from taskfleet.security.auth import Scope, issue_token
from taskfleet.store.migrate import migrate
from taskfleet.store.pool import create_pool
from taskfleet.store.signin import CODE_TTL_S, put_code

log = structlog.get_logger("taskfleet.fleet")

# Past this, the banner is printed anyway, naming what is not ready yet.
READY_TIMEOUT_S = 60.0
RULE = "═" * 72
CONSOLE_TOKEN_TTL_S = 12 * 3600  # what a sign-in link's browser session is good for


@dataclass
class Child:
    name: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    # As the supervisor's loops: a child that ran a healthy while gets a fresh backoff.
    backoff: RestartBackoff = field(default_factory=RestartBackoff)


async def run_fleet(settings: Settings, workers: list[str]) -> int:
    """Migrate, run the API and `workers` as children, restarting any that dies, until
    Ctrl-C or SIGTERM; then stop them all.

    Without TASKFLEET_JWT_SECRET the children share a random secret made for this run."""
    await migrate(settings.direct_database_url)
    env = dict(os.environ)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    if secret:
        settings.require_jwt_secret()  # a short one stops here, not the API in a restart loop
    else:
        secret = secrets.token_urlsafe(32)
        env["TASKFLEET_JWT_SECRET"] = secret
    python = [sys.executable, "-m", "taskfleet_cli"]
    children = [Child("api", [*python, "api"])]
    children += [Child(f"{w}-worker", [*python, "worker", w]) for w in workers]
    stop = stop_event_on_signals()
    for child in children:
        await _start(child, env)
    try:
        banner = welcome_text(settings, secret)
        await _announce_when_ready(settings, children, env, stop, banner, secret)
        await _heal(children, env, stop)
    finally:
        await _stop_all(children, settings.shutdown_grace_s + 5)
    return 0


async def _heal(
    children: list[Child], env: dict[str, str], stop: asyncio.Event, seconds: float | None = None
) -> None:
    """Restart a dead child, until `stop` (or for `seconds`)."""
    ends = None if seconds is None else time.monotonic() + seconds
    while not stop.is_set() and (ends is None or time.monotonic() < ends):
        for child in children:
            await _restart_if_dead(child, env)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _announce_when_ready(
    settings: Settings,
    children: list[Child],
    env: dict[str, str],
    stop: asyncio.Event,
    banner: str,
    secret: str,
) -> None:
    """Heal the children while they start; print the banner once all are ready, with a
    console link whose one-time code starts its minute then."""
    give_up_at = time.monotonic() + READY_TIMEOUT_S
    pool = await _registry_pool(settings)
    try:
        while not stop.is_set():
            waiting = await not_ready(settings, children, pool)
            if not waiting or time.monotonic() > give_up_at:
                link = await console_link(settings, secret, pool)
                print(framed(f"{banner}\n{link}\nCtrl-C stops the fleet.", waiting), flush=True)
                return
            await _heal(children, env, stop, seconds=0.5)
    finally:
        if pool is not None:
            await pool.close()


async def _registry_pool(settings: Settings) -> asyncpg.Pool | None:
    """A connection to read the worker registry; None if the database is away just now (the
    banner then waits for the API alone)."""
    try:
        return await create_pool(
            settings.database_url,
            size=1,
            statement_cache=settings.database_statement_cache,
            timeout_s=settings.db_timeout_s,
        )
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.warning("fleet_readiness_unchecked", error=repr(exc))
        return None


async def _start(child: Child, env: dict[str, str]) -> None:
    child.process = await asyncio.create_subprocess_exec(*child.argv, env=env)
    child.backoff.started()
    log.info("child_started", child=child.name, pid=child.process.pid)


async def _restart_if_dead(child: Child, env: dict[str, str]) -> None:
    assert child.process is not None
    if child.process.returncode is None:
        return
    delay = child.backoff.ended(failed=True)
    log.warning("child_exited", child=child.name, code=child.process.returncode, restart_in_s=delay)
    await asyncio.sleep(delay)
    await _start(child, env)


async def _stop_all(children: list[Child], grace_s: float) -> None:
    running = [c.process for c in children if c.process and c.process.returncode is None]
    for process in running:
        process.terminate()
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), grace_s)
    except TimeoutError:
        for process in running:
            if process.returncode is None:
                process.kill()
    log.info("fleet_stopped")


async def not_ready(
    settings: Settings, children: list[Child], pool: asyncpg.Pool | None
) -> list[str]:
    """The children not ready yet: the API until its /readyz answers 200, a worker until
    its process has registered (its consumer writes its first heartbeat when it starts)."""
    waiting = []
    if not await _api_ready(settings):
        waiting.append("api")
    if pool is None:
        return waiting
    try:
        live = {w["pid"] for w in await registry.list_workers(pool) if w["status"] == "live"}
    except (asyncpg.PostgresError, OSError, TimeoutError):
        live = set()
    for child in children:
        if child.name != "api" and (child.process is None or child.process.pid not in live):
            waiting.append(child.name)
    return waiting


async def _api_ready(settings: Settings) -> bool:
    url = f"{api_base(settings)}/readyz"
    try:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as answer:
            return answer.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


def api_base(settings: Settings) -> str:
    """The API's URL as a client on this machine reaches it."""
    # A wildcard address listens everywhere; a client reaches it on the loopback.
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    return f"http://{host}:{settings.api_port}"


async def console_link(settings: Settings, secret: str, pool: asyncpg.Pool | None) -> str:
    """The console's address, and a link that signs a browser in once as 'demo' within
    CODE_TTL_S (docs/security.md, "Console sign-in links"); the address alone without a
    database."""
    console = f"{api_base(settings)}/console/"
    paste = f"console: {console} (paste the token to sign in)"
    if pool is None:
        return paste
    try:
        link = await signin_link(settings, secret, pool)
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.warning("console_link_not_made", error=repr(exc))
        return paste
    return (
        f"console: {console}\n"
        f"  signs in once within {CODE_TTL_S:g} s: {link}\n"
        f"  a new link later: TASKFLEET_JWT_SECRET={secret} {_command()} console-link"
    )


async def signin_link(
    settings: Settings,
    secret: str,
    pool: asyncpg.Pool,
    *,
    user: str = "demo",
    scope: Scope = "user",
    ttl_s: int = CONSOLE_TOKEN_TTL_S,
) -> str:
    """A console link with a one-time code for a fresh token of `user`."""
    token = issue_token(
        secret, user, scope=scope, ttl_s=ttl_s, issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )  # fmt: skip
    return f"{api_base(settings)}/console/#code={await put_code(pool, token)}"


async def print_console_link(settings: Settings, user: str, scope: Scope, ttl_s: int) -> int:
    """`taskfleet console-link`: print a link that signs a browser in once, within a minute."""
    secret = settings.require_jwt_secret()
    pool = await create_pool(
        settings.database_url,
        size=1,
        statement_cache=settings.database_statement_cache,
        timeout_s=settings.db_timeout_s,
    )
    try:
        print(await signin_link(settings, secret, pool, user=user, scope=scope, ttl_s=ttl_s))
    finally:
        await pool.close()
    return 0


def welcome_text(settings: Settings, secret: str) -> str:
    """What to copy: the token, requests that use it, and where to look next."""
    token = issue_token(
        secret, "demo", ttl_s=86400, issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )
    base = api_base(settings)
    port = ApiSettings.of(settings).api_metrics_port  # 0: a free port the API logs; no link
    metrics = f"  http://127.0.0.1:{port}/metrics" if port else ""
    return (
        f"taskfleet is up: API on {base}\n"
        f"token for user 'demo' (24 h):\n"
        f"  export TOKEN={token}\n"
        "try:\n"
        f'  curl -s -X POST {base}/api/chat/stream -H "Authorization: Bearer $TOKEN" \\\n'
        "       -H 'Content-Type: application/json' \\\n"
        """       -d '{"chat_id": "c1", "content": "calc: 2*21"}'\n"""
        f'  curl -s {base}/api/tasks/<task_id> -H "Authorization: Bearer $TOKEN"\n'
        f"  TASKFLEET_JWT_SECRET={secret} {_command()} submit 'hello' --wait\n"
        f"links: {base}/docs  {base}/openapi.json  {base}/readyz{metrics}\n"
        "docs: README.md, docs/contract.md, docs/architecture.md, docs/console.md"
    )


def _command() -> str:
    """How this shell reaches the command line: `.venv/bin/taskfleet` under `make run`."""
    if os.path.basename(sys.argv[0]) == "taskfleet":
        return os.path.relpath(sys.argv[0])
    return "taskfleet"


def framed(text: str, waiting: list[str]) -> str:
    """The text between two rules, so that it stands out among log lines."""
    note = f"\nnot ready yet after {READY_TIMEOUT_S:g}s: {', '.join(waiting)}" if waiting else ""
    return f"\n{RULE}\n{text}{note}\n{RULE}\n"

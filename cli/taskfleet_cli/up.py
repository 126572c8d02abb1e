"""`taskfleet up`: the development fleet. Migrates, then runs the API and one of each worker
as child processes; restarts a crashed child with backoff; stops all on Ctrl-C/SIGTERM."""

import asyncio
import contextlib
import os
import secrets
import sys
from dataclasses import dataclass, field

import structlog

from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import RestartBackoff
from taskfleet.runtime.kernel import stop_event_on_signals
from taskfleet.security.auth import issue_token
from taskfleet.store.migrate import migrate

log = structlog.get_logger("taskfleet.fleet")


@dataclass
class Child:
    name: str
    argv: list[str]
    process: asyncio.subprocess.Process | None = None
    # As the supervisor's loops: a child that ran a healthy while gets a fresh backoff.
    backoff: RestartBackoff = field(default_factory=RestartBackoff)


async def run_fleet(settings: Settings, workers: list[str]) -> int:
    await migrate(settings.database_url)
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
    _print_welcome(settings, secret)
    try:
        while not stop.is_set():
            for child in children:
                await _restart_if_dead(child, env)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await _stop_all(children, settings.shutdown_grace_s + 5)
    return 0


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


def _print_welcome(settings: Settings, secret: str) -> None:
    token = issue_token(secret, "demo", ttl_s=86400, issuer=settings.jwt_issuer,
                        audience=settings.jwt_audience)  # fmt: skip
    base = f"http://{settings.api_host}:{settings.api_port}"
    print(
        f"\ntaskfleet is up: API on {base}\n"
        f"token for user 'demo' (24 h):\n  {token}\n"
        "try:\n"
        f"  curl -s -X POST {base}/api/chat/stream -H 'Authorization: Bearer {token}' \\\n"
        "       -H 'Content-Type: application/json' \\\n"
        """       -d '{"chat_id": "c1", "content": "hello"}'\n"""
        f"  curl -s {base}/api/tasks/<task_id> -H 'Authorization: Bearer {token}'\n"
        f"  TASKFLEET_JWT_SECRET={secret} taskfleet submit 'hello' --wait\n",
        flush=True,
    )

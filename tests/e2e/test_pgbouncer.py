"""The fleet behind PgBouncer in transaction pooling mode (deploy/local/pgbouncer, Debian's
package): the API and a chat worker reach PostgreSQL through the pooler with their statement
cache off, the migrations and session advisory locks straight (DATABASE_DIRECT_URL). A
submission completes, a cancel stops a running task, a live listener sees both, and every
server session the pooler hands out runs as the kernel's role."""

import asyncio
import csv
import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import aiohttp
import pytest

from taskfleet.core.settings import Settings
from taskfleet.data.retention import CLEANUP_LOCK, RetentionJob
from taskfleet.security.auth import issue_token
from taskfleet.store.pool import create_pool, with_database
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for

SCRIPT = Path(__file__).parents[2] / "deploy" / "local" / "pgbouncer"
WORD_MS = 100


@pytest.fixture
async def bouncer(settings: Settings) -> AsyncIterator[str]:
    """PgBouncer on a free port in front of the session's PostgreSQL: the session's database
    through it."""
    assert os.geteuid() == 0, "deploy/local/pgbouncer runs PgBouncer as postgres: needs root"
    port, pg_port = free_port(), urlsplit(settings.database_url).port or 5432
    up = await run([str(SCRIPT), "up", str(port), str(pg_port)])
    assert up.returncode == 0, up.stderr
    url = up.stdout.strip().splitlines()[-1].removeprefix("DATABASE_URL=")
    try:
        yield with_database(url, urlsplit(settings.database_url).path.lstrip("/"))
    finally:
        await run([str(SCRIPT), "down", str(port)])


async def run(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A command, off the event loop; its output as text."""

    def blocking() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    return await asyncio.to_thread(blocking)


def bouncer_env(settings: Settings, url: str, **extra: Any) -> dict[str, str]:
    return process_env(
        settings,
        DATABASE_URL=url,
        DATABASE_DIRECT_URL=settings.database_url,
        DATABASE_STATEMENT_CACHE=0,
        **extra,
    )


async def pooler_transactions(url: str) -> int:
    """Transactions PgBouncer has passed to the session's database (its admin console, which
    speaks the simple protocol only: psql)."""
    shown = await run(["psql", with_database(url, "pgbouncer"), "--csv", "-c", "SHOW STATS"])
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    name = urlsplit(url).path.lstrip("/")
    rows = csv.DictReader(io.StringIO(out))
    return sum(int(row["total_xact_count"]) for row in rows if row["database"] == name)


async def test_every_server_session_runs_as_the_kernel_role(bouncer: str) -> None:
    pool = await create_pool(bouncer, size=12, statement_cache=0)
    try:
        # More clients at once than one server session: PgBouncer opens several, and its
        # connect_query makes each the kernel's role (a session SET of one would not follow).
        rows = await asyncio.gather(
            *(
                pool.fetchrow("SELECT current_user AS who, pg_backend_pid() AS pid, pg_sleep(0.2)")
                for _ in range(24)
            )
        )
    finally:
        await pool.close()
    assert {r["who"] for r in rows} == {"taskfleet_service"}
    assert len({r["pid"] for r in rows}) > 1


async def api_ready(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def _task(http: aiohttp.ClientSession, task_id: str, *statuses: str) -> Any:
    async with http.get(f"/api/tasks/{task_id}") as resp:
        task = await resp.json()
    return task if task["status"] in statuses else None


async def _until_terminal(ws: aiohttp.ClientWebSocketResponse, ids: set[str]) -> list[Any]:
    seen: list[Any] = []
    ended: set[str] = set()
    while ended != ids:
        event = await ws.receive_json(timeout=30)
        seen.append(event)
        status = (event.get("task") or {}).get("status")
        if event.get("task_id") in ids and status in ("completed", "cancelled", "failed"):
            ended.add(event["task_id"])
    return seen


async def test_submit_complete_cancel_and_listen_through_pgbouncer(
    settings: Settings, bouncer: str, spawn: Callable[..., Proc]
) -> None:
    env = bouncer_env(settings, bouncer, SCRIPTED_DELAY_MS=WORD_MS)
    migrate = await run([sys.executable, "-m", "taskfleet_cli", "migrate"], env=env)
    assert migrate.returncode == 0, migrate.stderr  # straight to PostgreSQL: its advisory lock
    before = await pooler_transactions(bouncer)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = spawn(["api", "--port", str(port)], env, name="api")
    worker = spawn(["worker", "chat"], env, name="chat")
    await wait_for(lambda: api_ready(base), what="the API to be ready", timeout_s=30)
    user = f"pooled-{uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
    async with aiohttp.ClientSession(base, headers=headers) as http:
        async with http.ws_connect(f"/ws/tasks?token={issue_token(JWT_SECRET, user)}") as ws:
            assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
            posts = [
                http.post("/api/chat/stream", json={"chat_id": f"c{i}", "content": f"ping {i}"})
                for i in range(20)
            ]
            accepted = []
            for post in posts:
                async with post as resp:
                    assert resp.status == 202, await resp.text()
                    accepted.append(await resp.json())
            long = " ".join(f"w{i}" for i in range(300))  # 30 s of words: cancelled long before
            async with http.post(
                "/api/chat/stream", json={"chat_id": "long", "content": long}
            ) as resp:
                assert resp.status == 202, await resp.text()
                slow = (await resp.json())["task_id"]
            await wait_for(
                lambda: _task(http, slow, "processing"), what="the long task to run", timeout_s=30
            )
            async with http.post(f"/api/tasks/{slow}/cancel") as resp:
                assert resp.status in (200, 202), await resp.text()
            ids = {a["task_id"] for a in accepted} | {slow}
            events = await _until_terminal(ws, ids)
        for a in accepted:
            task = await _task(http, a["task_id"], "completed")
            assert task is not None, a
            assert task["output"]["reply"].startswith("You said: ping")
        assert await _task(http, slow, "cancelled") is not None
    ended = {
        e["task_id"]: e["task"]["status"]
        for e in events
        if e.get("type") == "task.updated" and e["task"]["status"] in ("completed", "cancelled")
    }
    assert ended == {**{a["task_id"]: "completed" for a in accepted}, slow: "cancelled"}
    # It went through the pooler, and nothing complained of a prepared statement or a role.
    assert await pooler_transactions(bouncer) - before > 100
    for proc in (api, worker):
        assert "prepared statement" not in proc.output(), proc.output()[-3000:]


async def test_the_retention_job_takes_its_lock_on_postgresql_itself(
    settings: Settings, bouncer: str
) -> None:
    """Behind the pooler, the job's session advisory lock is on a connection of its own to
    DATABASE_DIRECT_URL: it deletes, and no server session of the pooler is left holding it."""
    pooled = Settings.of(settings, DATABASE_URL=bouncer, DATABASE_DIRECT_URL=settings.database_url)
    pool = await create_pool(bouncer, size=2, statement_cache=0)
    try:
        old = uuid4()
        await pool.execute(
            "INSERT INTO tasks (id, type, user_id, status, max_attempts, completed_at)"
            " VALUES ($1, 'chat_message', 'pooled-retention', 'completed', 5,"
            " now() - interval '800 days')",
            old,
        )
        job = RetentionJob.from_settings(pooled)
        assert job.dsn == settings.database_url
        result = await job.run_once()
        assert result is not None
        assert result.deleted >= 1
        assert await pool.fetchval("SELECT count(*) FROM tasks WHERE id = $1", old) == 0
        # The lock went with the job's session: anyone may take it now, through the pooler too.
        async with pool.acquire() as conn, conn.transaction():
            assert await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", CLEANUP_LOCK)
    finally:
        await pool.close()

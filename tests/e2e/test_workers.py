"""The worker registry: real worker processes heartbeat into PostgreSQL; a killed one reads as
lost within three heartbeats with its in-flight task at risk, and that task still completes;
one stopped with SIGTERM reads as stopped; `taskfleet workers` and the admin route agree."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.settings import Settings
from taskfleet.runtime.memguard import EXIT_MEMORY
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for

HEARTBEAT_S = 1.0
CHAT = QUEUES[TaskType.CHAT]
ADMIN = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'ops', scope='admin')}"}
SERVICE = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'backend', scope='service')}"}


async def test_a_killed_worker_is_lost_within_three_heartbeats_and_its_task_still_completes(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Slow replies (0.4 s a word) keep a task in flight while the worker is killed.
    env = process_env(settings, WORKER_HEARTBEAT_S=HEARTBEAT_S, SCRIPTED_DELAY_MS=400)
    spawn(["api", "--port", str(port)], env)
    doomed = spawn(["worker", "chat"], env, name="doomed")
    stopping = spawn(["worker", "chat"], env, name="stopping")
    async with aiohttp.ClientSession(url) as http:

        async def workers(query: str = "") -> dict[int, dict[str, Any]]:
            try:
                async with http.get(f"/api/admin/workers{query}", headers=ADMIN) as resp:
                    if resp.status != 200:
                        return {}
                    return {w["pid"]: w for w in (await resp.json())["workers"]}
            except aiohttp.ClientError:
                return {}

        async def both_live() -> bool:
            seen = await workers()
            return all(
                seen.get(p.popen.pid, {}).get("status") == "live" for p in (doomed, stopping)
            )

        await wait_for(both_live, what="both workers live in the registry", timeout_s=30)
        # Started with no flag, a chat worker takes its queue's own slots (the fast setup).
        assert (await workers())[doomed.popen.pid]["concurrency"] == CHAT.concurrency == 64

        # A SIGTERM'd worker stops cleanly and says so
        stopping.popen.send_signal(signal.SIGTERM)
        assert stopping.popen.wait(timeout=30) == 0

        async def stopped() -> bool:
            seen = await workers("?include_stopped=true")
            return seen.get(stopping.popen.pid, {}).get("status") == "stopped"

        await wait_for(stopped, what="the stopped worker to say so")
        assert stopping.popen.pid not in await workers()  # gone from the default listing

        # A task in flight on the other one
        body = {"user_id": "reg-user", "chat_id": "reg", "content": "one two three four five six"}
        async with http.post("/api/chat/stream", json=body, headers=SERVICE) as resp:
            assert resp.status == 202
            task_id = (await resp.json())["task_id"]

        async def in_flight() -> bool:
            return task_id in (await workers()).get(doomed.popen.pid, {}).get("inflight", [])

        await wait_for(in_flight, what="the task in the worker's heartbeat")
        os.kill(doomed.popen.pid, signal.SIGKILL)
        doomed.popen.wait(timeout=10)

        async def lost() -> dict[str, Any] | None:
            worker = (await workers()).get(doomed.popen.pid)
            return worker if worker and worker["status"] == "lost" else None

        worker = await wait_for(lost, what="the killed worker to read as lost", timeout_s=10)
        assert worker["heartbeat_age_s"] <= 3 * HEARTBEAT_S
        assert worker["at_risk"] == [task_id]

        # The CLI shows the same
        shown = _cli(env)
        line = next(row for row in shown.splitlines() if str(doomed.popen.pid) in row)
        assert "lost" in line
        assert task_id[:8] in line

        # RabbitMQ gives the task back once the dead connection is gone; another worker ends it
        spawn(["worker", "chat"], env, name="rescuer")

        async def completed() -> bool:
            async with http.get(f"/api/tasks/{task_id}", headers=SERVICE) as resp:
                return resp.status == 200 and (await resp.json())["status"] == "completed"

        await wait_for(completed, what="the at-risk task to complete elsewhere", timeout_s=60)


def _cli(env: dict[str, str]) -> str:
    """`taskfleet workers`, wide enough that rich does not fold a row."""
    done = subprocess.run(
        [sys.executable, "-m", "taskfleet_cli", "workers"],
        env={**env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_worker_over_its_hard_memory_limit_stops_cleanly_to_be_restarted(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    # A hard limit below what any Python worker needs: it is passed at the first check.
    env = process_env(settings, MEMORY_SOFT_LIMIT_MB=0, MEMORY_HARD_LIMIT_MB=20)
    worker = spawn(["worker", "chat"], env, name="bloated")
    assert worker.popen.wait(timeout=60) == EXIT_MEMORY
    output = worker.output()
    assert '"memory_hard_limit"' in output
    assert '"worker_stopped"' in output  # the graceful path, not a crash
    assert "worker stopped: resident memory over MEMORY_HARD_LIMIT_MB=20" in output

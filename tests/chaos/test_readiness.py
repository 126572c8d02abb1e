"""Readiness follows the design while the broker is away: the API stays ready (PostgreSQL
answers, and the outbox keeps what it accepts until the broker is back), its /readyz body and
`taskfleet_broker_connected` say the broker is down; a worker, which cannot take work without
the broker, is not ready until it is back."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest

from taskfleet.core.settings import Settings
from tests.chaos.harness import SERVICE_TOKEN
from tests.chaos.infra import can_operate_services, rabbitmqctl
from tests.conftest import Proc, free_port, process_env, wait_for

pytestmark = pytest.mark.skipif(bool(can_operate_services()), reason=str(can_operate_services()))


def _port(proc: Proc, event: str, key: str) -> int | None:
    for line in proc.output().splitlines():
        if f'"{event}"' in line:
            return int(json.loads(line)[key])
    return None


async def _get(url: str) -> tuple[int, Any] | None:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            body = await resp.json() if "json" in resp.content_type else await resp.text()
            return resp.status, body
    except aiohttp.ClientError:
        return None


def _connected(metrics: str) -> float | None:
    for line in metrics.splitlines():
        if line.startswith("taskfleet_broker_connected "):
            return float(line.split()[1])
    return None


async def test_the_api_stays_ready_without_the_broker_and_says_so(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    port = free_port()
    api = spawn(["api", "--port", str(port)], process_env(settings), name="api")
    worker = spawn(["worker", "chat"], process_env(settings), name="chat")
    api_url = f"http://127.0.0.1:{port}"

    async def state(want: bool) -> bool:
        metrics_port = _port(api, "api_started", "metrics_port")
        worker_port = _port(worker, "worker_started", "metrics_port")
        if metrics_port is None or worker_port is None:
            return False
        ready = await _get(f"{api_url}/readyz")
        metrics = await _get(f"http://127.0.0.1:{metrics_port}/metrics")
        worker_ready = await _get(f"http://127.0.0.1:{worker_port}/readyz")
        if ready is None or metrics is None or worker_ready is None:
            return False
        return (
            ready == (200, {"status": "ready", "checks": {"database": True},
                            "broker": {"connected": want}})
            and _connected(metrics[1]) == float(want)
            and worker_ready[0] == (200 if want else 503)
        )  # fmt: skip

    await wait_for(lambda: state(True), what="the API and worker ready", timeout_s=30)
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    try:
        await wait_for(lambda: state(False), what="the broker reported down", timeout_s=30)
        # Ready, and rightly so: a chat message is accepted and kept in the outbox.
        headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
        body = {"chat_id": "readiness", "content": "hello", "user_id": "readiness-user"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{api_url}/api/chat/stream", json=body, headers=headers) as resp,
        ):
            assert resp.status == 202, await resp.text()
            task_id = (await resp.json())["task_id"]
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")
    await wait_for(lambda: state(True), what="the broker reported back", timeout_s=60)

    async def completed() -> bool:
        status = await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", task_id)
        return bool(status == "completed")

    await wait_for(completed, what="the task accepted in the outage to complete", timeout_s=60)

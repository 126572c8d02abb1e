"""The metrics a process serves on its own metrics port, read from real processes: the API's
requests by route template, method and status with their latency, its open WebSockets, its
publisher and database pool; a worker's slots (utilisation = inflight / slots)."""

import json
import uuid
from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _port(proc: Proc, event: str) -> int | None:
    for line in proc.output().splitlines():
        if f'"{event}"' in line:
            return int(json.loads(line)["metrics_port"])
    return None


async def scrape(port: int) -> Samples:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_the_api_counts_requests_by_route_template_and_its_sockets(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = spawn(["api", "--port", str(port)], process_env(settings, DB_POOL_SIZE="7"), name="api")
    metrics_port = await wait_for(lambda: _metrics(api, "api_started"), what="the API")
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'metered')}"}
    async with aiohttp.ClientSession(url, headers=headers) as http:
        for _ in range(2):  # two ids, one route: one series
            async with http.get(f"/api/tasks/{uuid.uuid4()}") as resp:
                assert resp.status == 404
        async with http.get("/no/such/route") as resp:
            assert resp.status == 404
        async with http.get("/api/tasks", headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401
        ws = await http.ws_connect("/ws/tasks")
        assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
        samples = await scrape(metrics_port)
        assert value(samples, "taskfleet_websockets_open") == 1
        await ws.close()

    async def socket_closed() -> Samples | None:
        samples = await scrape(metrics_port)
        return samples if value(samples, "taskfleet_websockets_open") == 0 else None

    samples = await wait_for(socket_closed, what="the socket's close counted")
    count = "taskfleet_http_requests_total"
    assert value(samples, count, route="/api/tasks/{task_id}", method="GET", status="404") == 2
    assert value(samples, count, route="unmatched", method="GET", status="404") == 1
    assert value(samples, count, route="/api/tasks", method="GET", status="401") == 1
    assert value(samples, count, route="/ws/tasks", method="GET", status="101") == 1
    assert not [key for key in samples if key[0] == count and ("route", "/no/such/route") in key[1]]
    duration = "taskfleet_http_request_duration_seconds_count"
    assert value(samples, duration, route="/api/tasks/{task_id}", method="GET") == 2
    assert value(samples, "taskfleet_db_pool_connections", state="max") == 7
    in_use = value(samples, "taskfleet_db_pool_connections", state="in_use")
    idle = value(samples, "taskfleet_db_pool_connections", state="idle")
    assert in_use is not None
    assert idle is not None
    assert 1 <= in_use + idle <= 7
    assert value(samples, "taskfleet_broker_connected") == 1
    assert value(samples, "taskfleet_publisher_waiting") == 0


async def test_a_worker_exports_its_slots(settings: Settings, spawn: Callable[..., Proc]) -> None:
    worker = spawn(["worker", "tool", "--concurrency", "3"], process_env(settings), name="tool")
    metrics_port = await wait_for(lambda: _metrics(worker, "worker_started"), what="the worker")
    samples = await scrape(metrics_port)
    assert value(samples, "taskfleet_worker_slots", queue="tool_executions") == 3
    assert value(samples, "taskfleet_inflight_tasks", queue="tool_executions") is not None


async def _metrics(proc: Proc, event: str) -> int | None:
    return _port(proc, event)

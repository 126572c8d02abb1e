"""Every line a process writes is one JSON object, the libraries' lines included: an API (at
LOG_LEVEL=debug, where aiormq, aio_pika and aiohttp talk most) and a chat worker (at the
default level, where only the libraries' warnings and errors pass) serve a chat message and a
malformed HTTP request, and RabbitMQ closes their connections (aiormq logs an error with its
traceback); then their whole output is parsed."""

import asyncio
import json
import signal
import socket
from collections.abc import Callable

import aiohttp
import asyncpg
import pytest

from taskfleet.core.settings import Settings
from tests.chaos.harness import SERVICE_TOKEN
from tests.chaos.infra import can_operate_services, rabbitmqctl
from tests.conftest import Proc, free_port, process_env, wait_for

pytestmark = pytest.mark.skipif(bool(can_operate_services()), reason=str(can_operate_services()))


def json_lines(proc: Proc) -> list[dict[str, object]]:
    """Every line of the process's output, parsed (a line that is not JSON fails here)."""
    lines = []
    for number, line in enumerate(proc.output().splitlines(), 1):
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{proc.name} line {number} is not JSON: {line!r}") from None
        assert isinstance(parsed, dict), line
        lines.append(parsed)
    return lines


def _malformed_request(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as link:
        link.sendall(b"NOT\x00HTTP / HTTP/1.1\r\n\r\n")
        return link.recv(100)


async def test_every_line_is_json_library_lines_included(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    port = free_port()
    api = spawn(["api", "--port", str(port)], process_env(settings, LOG_LEVEL="debug"), name="api")
    worker = spawn(["worker", "chat"], process_env(settings), name="chat")
    procs = (api, worker)

    def started() -> bool:
        return '"api_started"' in api.output() and '"worker_started"' in worker.output()

    await wait_for(lambda: asyncio.sleep(0, started()), what="both processes", timeout_s=30)
    async with (
        aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
        http.post(
            "/api/chat/stream",
            json={"chat_id": "logs", "content": "hi", "user_id": "logs-user"},
            headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
        ) as resp,
    ):
        assert resp.status == 202
        task_id = (await resp.json())["task_id"]

    async def completed() -> bool:
        status = await db.fetchval("SELECT status FROM tasks WHERE id = $1::uuid", task_id)
        return bool(status == "completed")

    await wait_for(completed, what="the chat to complete", timeout_s=30)
    assert (await asyncio.to_thread(_malformed_request, port)).startswith(b"HTTP/1.")
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "log test")

    def reconnected() -> bool:
        return all(p.output().count('"amqp_connected"') >= 2 for p in procs)

    await wait_for(lambda: asyncio.sleep(0, reconnected()), what="reconnects", timeout_s=30)
    for proc in procs:
        proc.popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.popen.wait, 30)

    api_lines, worker_lines = json_lines(api), json_lines(worker)
    api_loggers = {str(line.get("logger")) for line in api_lines}
    # The libraries' debug lines, each named by its logger, rendered as JSON.
    assert {"aiormq.connection", "aio_pika.connection", "aiohttp.server"} <= api_loggers
    # At the default level, the close RabbitMQ forced is aiormq's error, with its traceback.
    [forced] = [
        line
        for line in worker_lines
        if line.get("logger") == "aiormq.connection" and line["level"] == "error"
    ]
    assert "CONNECTION_FORCED" in str(forced["event"])
    assert not any(line["level"] == "debug" for line in worker_lines)
    # structlog's own lines as before: one event name per outcome.
    assert [line["event"] for line in api_lines if line["event"] == "api_stopped"] == [
        "api_stopped"
    ]
    assert any(line["event"] == "task_completed" for line in worker_lines)

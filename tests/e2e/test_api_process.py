"""The API as a process: it stops promptly at SIGTERM (its WebSockets are closed with 1001,
going away, so that clients reconnect elsewhere at once, instead of each open socket holding
the stop for aiohttp's 60 s, past a Kubernetes grace period), and it serves /metrics on
API_METRICS_PORT, not to clients."""

import asyncio
import json
import signal
import time
from collections.abc import Callable

import aiohttp

from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for


async def _ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_sigterm_closes_every_websocket_with_1001_and_the_api_exits_promptly(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = spawn(["api", "--port", str(port)], process_env(settings), name="api")
    await wait_for(lambda: _ready(url), what="the API", timeout_s=30)
    user = issue_token(JWT_SECRET, "listener")
    service = issue_token(JWT_SECRET, "backend", scope="service")
    async with aiohttp.ClientSession() as http:
        sockets = [
            await http.ws_connect(f"{url}/ws/tasks?token={token}") for token in (user, service)
        ]
        for ws in sockets:
            assert (await ws.receive_json(timeout=10))["type"] == "snapshot"
        api.popen.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        closes = await asyncio.gather(*(ws.receive(timeout=15) for ws in sockets))
        assert [m.type for m in closes] == [aiohttp.WSMsgType.CLOSE] * 2
        assert [ws.close_code for ws in sockets] == [1001, 1001]
        assert all(m.extra is not None and b"going away" in m.extra.encode() for m in closes)

    async def exited() -> bool:
        return api.popen.poll() is not None

    await wait_for(exited, what="the API to exit", timeout_s=30)
    # A generous bound: the stop closes sockets at once; before, it waited 60 s for them.
    assert time.monotonic() - stopping < 15
    assert api.popen.returncode == 0, api.output()[-2000:]
    assert "api_stopped" in api.output()


async def _metrics_port(api: Proc) -> int | None:
    for line in api.output().splitlines():
        if '"api_started"' in line:
            return int(json.loads(line)["metrics_port"])
    return None


async def test_metrics_are_served_on_their_own_port_only(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = spawn(["api", "--port", str(port)], process_env(settings), name="api")
    await wait_for(lambda: _ready(url), what="the API", timeout_s=30)
    metrics_port = await wait_for(lambda: _metrics_port(api), what="the metrics port")
    assert metrics_port != port
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            assert resp.status == 200
            assert "taskfleet_queue_messages" in await resp.text()
        token = issue_token(JWT_SECRET, "someone")
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}/metrics", headers=headers) as resp:
            assert resp.status == 404

"""Webhooks across API processes: an API SIGKILLed in the middle of a POST loses nothing (the
next one sends the event again after the claim's lease, with the same `webhook-id`: at most a
duplicate), and two APIs running side by side send each event once, not once each."""

import signal
from collections.abc import Callable
from typing import Any

import aiohttp

from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for
from tests.e2e.console_harness import api_ready
from tests.webhook_receiver import Receiver

EVENTS = 12


async def _start_api(
    settings: Settings, spawn: Callable[..., Proc], name: str
) -> tuple[str, Proc, int]:
    port, metrics_port = free_port(), free_port()
    env = process_env(
        settings, WEBHOOK_ALLOWED_HOSTS="127.0.0.1", WEBHOOK_TIMEOUT_S=2, WEBHOOK_POLL_S=0.1,
        WEBHOOK_BACKOFF_S=0.2, RETENTION_INTERVAL_S=0, API_METRICS_PORT=metrics_port,
    )  # fmt: skip
    proc = spawn(["api", "--port", str(port)], env, name=name)
    url = f"http://127.0.0.1:{port}"
    await wait_for(lambda: api_ready(url), what=f"{name} to be ready", timeout_s=30)
    return url, proc, metrics_port


async def _delivered_count(http: aiohttp.ClientSession, metrics_port: int) -> float:
    async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith('taskfleet_webhook_deliveries_total{outcome="delivered"}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("taskfleet_webhook_deliveries_total is not exported")


async def _cancelled_task(http: aiohttp.ClientSession, url: str, user: str) -> str:
    body = {"chat_id": "c", "content": "hello"}
    async with http.post(f"{url}/api/chat/stream", json=body) as resp:
        assert resp.status == 202, await resp.text()
        task_id: str = (await resp.json())["task_id"]
    async with http.post(f"{url}/api/tasks/{task_id}/cancel") as resp:
        assert resp.status == 202, await resp.text()
    return task_id


async def test_a_killed_api_loses_no_webhook_and_two_apis_send_each_once(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    receiver = Receiver(hold=True)  # takes the first POST and never answers it
    await receiver.start()
    user = "hooks-kill"
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            first, first_proc, _ = await _start_api(settings, spawn, "api-1")
            body = {"url": receiver.url, "events": ["task.cancelled"]}
            async with http.post(f"{first}/api/webhooks", json=body) as resp:
                hook: dict[str, Any] = await resp.json()
                assert resp.status == 201, hook
            await _cancelled_task(http, first, user)
            [held] = await receiver.wait_for(1)
            # The API dies mid-POST: its claim is all that is left of the attempt.
            first_proc.popen.send_signal(signal.SIGKILL)
            first_proc.popen.wait(timeout=10)
            receiver.hold = False
            second, _, second_metrics = await _start_api(settings, spawn, "api-2")
            third, _, third_metrics = await _start_api(settings, spawn, "api-3")
            again = await receiver.wait_for(2, timeout_s=30)
            assert again[1].webhook_id == held.webhook_id  # the same event, the same id
            assert again[1].verified(hook["secret"])["type"] == "task.cancelled"

            tasks = {await _cancelled_task(http, (second, third)[i % 2], user)
                     for i in range(EVENTS)}  # fmt: skip
            await receiver.wait_for(2 + EVENTS, timeout_s=30)
            log_url = f"{second}/api/webhooks/{hook['id']}/deliveries?limit=200"

            async def all_delivered() -> list[dict[str, Any]] | None:
                async with http.get(log_url) as resp:
                    found: list[dict[str, Any]] = (await resp.json())["deliveries"]
                done = [d for d in found if d["status"] == "delivered"]
                return found if len(done) == len(found) == 1 + EVENTS else None

            log = await wait_for(all_delivered, what="every delivery delivered")
            # The metric counts them, across the two replicas that sent them.
            counts = [await _delivered_count(http, p) for p in (second_metrics, third_metrics)]
            assert sum(counts) == 1 + EVENTS
    finally:
        await receiver.stop()
    later = receiver.got[2:]
    assert {r.verified(hook["secret"])["data"]["task_id"] for r in later} == tasks
    # Each of them once, although two APIs were delivering.
    assert len({r.webhook_id for r in later}) == len(later) == EVENTS
    assert {d["id"] for d in log} == {r.webhook_id for r in receiver.got}
    first_one = next(d for d in log if d["id"] == held.webhook_id)
    assert first_one["attempts"] == 2

"""The API with its webhook settings shortened for the tests, and a few calls of its routes."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from fleet_api.routes import SETTINGS
from fleet_api.settings import ApiSettings
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.api_client import auth, submit

Client = TestClient[web.Request, web.Application]
FAST = {
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_BACKOFF_S": 0.1,
    "WEBHOOK_BACKOFF_MAX_S": 0.4,
    "WEBHOOK_POLL_S": 0.1,
    "WEBHOOK_TIMEOUT_S": 2,
}


@asynccontextmanager
async def hooks_api(kernel: Kernel, **settings: Any) -> AsyncIterator[Client]:
    """An in-process API whose deliverer uses FAST, overridden by `settings`."""
    app = create_app(kernel)
    app[SETTINGS] = ApiSettings.of(kernel.settings, **{**FAST, **settings})
    async with TestClient(TestServer(app)) as client:
        yield client


async def add_webhook(client: Client, user: str, url: str, *events: str) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events:
        body["events"] = list(events)
    resp = await client.post("/api/webhooks", json=body, headers=auth(user))
    created: dict[str, Any] = await resp.json()
    assert resp.status == 201, created
    return created


async def cancelled_task(client: Client, user: str) -> str:
    """A chat task submitted and cancelled at once (queued: no worker needed)."""
    task_id: str = (await submit(client, user))["task_id"]
    resp = await client.post(f"/api/tasks/{task_id}/cancel", headers=auth(user))
    assert resp.status == 202, await resp.text()
    return task_id


async def deliveries(client: Client, user: str, webhook_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/webhooks/{webhook_id}/deliveries", headers=auth(user))
    body = await resp.json()
    assert resp.status == 200, body
    found: list[dict[str, Any]] = body["deliveries"]
    return found


async def wait_delivery(
    client: Client, user: str, webhook_id: str, status: str, timeout_s: float = 20
) -> dict[str, Any]:
    """The endpoint's newest delivery, once it has `status`."""

    async def probe() -> dict[str, Any] | None:
        found = await deliveries(client, user, webhook_id)
        return found[0] if found and found[0]["status"] == status else None

    got: dict[str, Any] = await wait_for(probe, timeout_s=timeout_s, what=f"a {status} delivery")
    return got

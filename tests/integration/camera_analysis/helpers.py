"""What the camera-analysis tests share: the camera queue, a user's token, uploading a frame,
waiting for its analysis, reading the analyses, motion events and the error body of a refusal."""

from typing import Any
from uuid import uuid4

import orjson
from aio_pika.abc import AbstractQueue
from aiohttp import web
from aiohttp.test_utils import TestClient

from camera_worker.handlers import MOTION_EVENT
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import Scope, issue_token
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.conftest import wait_status

CAMERA = QUEUES[TaskType.CAMERA]
Client = TestClient[web.Request, web.Application]


def auth(user: str, scope: Scope = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user, scope=scope)}"}


async def motion_seen(kernel: Kernel, queue: AbstractQueue) -> list[dict[str, Any]]:
    """Every motion event published so far.

    A sentinel goes through the same broker channel as the handler's events, after the tasks
    in question completed; events of one channel arrive in order, so once the sentinel is in,
    anything those tasks published is in too (and an absence is a real absence).
    """
    sentinel = uuid4().hex
    await kernel.broker.publish_event(MOTION_EVENT, orjson.dumps({"sentinel": sentinel}))
    seen: list[dict[str, Any]] = []

    async def until_sentinel() -> bool:
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            body = orjson.loads(message.body)
            if body.get("sentinel") == sentinel:
                return True
            seen.append(body)
        return False

    await wait_for(until_sentinel, timeout_s=10, what="the sentinel event")
    return seen


async def upload(client: Client, user: str, camera: str, data: bytes) -> dict[str, Any]:
    resp = await client.post(f"/api/cameras/{camera}/frames", data=data, headers=auth(user))
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    assert set(body) == {"frame_id", "task_id", "status"}
    assert body["status"] == "queued"
    return body


async def analysed(kernel: Kernel, client: Client, user: str, camera: str, data: bytes) -> Any:
    """Upload a frame and wait for its task to complete; returns the task row."""
    accepted = await upload(client, user, camera, data)
    return await wait_status(kernel, accepted["task_id"], "completed", "failed")


async def analyses(client: Client, user: str, camera: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/cameras/{camera}/analyses", headers=auth(user))
    body = await resp.json()
    assert resp.status == 200, body
    return body["analyses"]  # type: ignore[no-any-return]


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]

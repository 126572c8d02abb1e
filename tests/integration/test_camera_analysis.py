"""Frames through the real API, RabbitMQ, the camera handler and PostgreSQL: motion and its
event, hostile images failing their own task only, and the camera routes' answers to bad input."""

import io
import os
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from uuid import uuid4

import orjson
import pytest
from aio_pika.abc import AbstractQueue
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from camera_worker.handlers import MOTION_EVENT, handle_frame
from camera_worker.settings import CameraWorkerSettings
from fleet_api.app import create_app
from taskfleet.core.constants import EVENTS_EXCHANGE, QUEUES, TaskType
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import Scope, issue_token
from taskfleet.store.records import NewTask
from tests.camera_images import bomb_png, frame, truncated_jpeg
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.conftest import ConsumerFactory, wait_status

CAMERA = QUEUES[TaskType.CAMERA]

Client = TestClient[Any, Any]


def auth(user: str, scope: Scope = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user, scope=scope)}"}


@pytest.fixture
def user() -> str:
    return f"cam-{uuid4().hex[:8]}"


@pytest.fixture
async def client(kernel: Kernel, consume: ConsumerFactory) -> AsyncIterator[Client]:
    """The API with its real publish, and a camera consumer running the real handler."""
    await consume(partial(handle_frame, kernel=kernel), spec=CAMERA)
    async with TestClient(TestServer(create_app(kernel))) as c:
        yield c
    # Leave no camera capturing for the tests that follow (they share the database).
    await kernel.pool.execute("UPDATE cameras SET enabled = false, next_capture_at = NULL")


@pytest.fixture
async def motion_events(kernel: Kernel) -> AsyncIterator[AbstractQueue]:
    """Our own queue bound to the events exchange with routing key camera.motion."""
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    exchange = await channel.get_exchange(kernel.settings.queue(EVENTS_EXCHANGE))
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=MOTION_EVENT)
    yield queue
    await channel.close()


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
    assert set(body) == {"frame_id", "task_id"}
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


class TestMotion:
    async def test_a_moving_square_is_motion_and_publishes_a_motion_event(
        self, kernel: Kernel, client: Client, user: str, motion_events: AbstractQueue
    ) -> None:
        first = await analysed(kernel, client, user, "front", frame(40))
        second = await analysed(kernel, client, user, "front", frame(200))
        assert (first["status"], second["status"]) == ("completed", "completed")
        newest, oldest = await analyses(client, user, "front")
        assert newest["frame_id"] == second["output"]["frame_id"]
        assert oldest["motion"] is None  # the camera's first frame: nothing to compare with
        assert oldest["motion_detected"] is False
        assert newest["motion"] > CameraWorkerSettings.of(kernel.settings).camera_motion_threshold
        assert newest["motion_detected"] is True
        assert newest["previous_frame_id"] == oldest["frame_id"]
        assert newest["thumbnail"].startswith("data:image/jpeg;base64,")
        assert second["output"]["motion_detected"] is True
        events = [e for e in await motion_seen(kernel, motion_events) if e["user_id"] == user]
        assert len(events) == 1
        event = events[0]
        assert event["type"] == "camera.motion"
        assert (event["camera_id"], event["frame_id"], event["task_id"]) == (
            "front", newest["frame_id"], str(second["id"])
        )  # fmt: skip
        assert event["motion"] == pytest.approx(newest["motion"])

    async def test_two_identical_frames_report_no_motion_and_no_event(
        self, kernel: Kernel, client: Client, user: str, motion_events: AbstractQueue
    ) -> None:
        await analysed(kernel, client, user, "porch", frame(120))
        second = await analysed(kernel, client, user, "porch", frame(120))
        assert second["status"] == "completed"
        assert second["output"]["motion"] == 0.0
        assert second["output"]["motion_detected"] is False
        assert [a["motion"] for a in await analyses(client, user, "porch")] == [0.0, None]
        events = await motion_seen(kernel, motion_events)
        assert [e for e in events if e["user_id"] == user] == []

    async def test_the_threshold_is_the_cameras_own(
        self, kernel: Kernel, client: Client, user: str, motion_events: AbstractQueue
    ) -> None:
        # Given a camera that only calls it motion when most of the frame changes
        resp = await client.put(
            "/api/cameras/yard",
            headers=auth(user),
            json={"enabled": False, "motion_threshold": 0.5},
        )
        assert resp.status == 200, await resp.json()
        await analysed(kernel, client, user, "yard", frame(40))
        moved = await analysed(kernel, client, user, "yard", frame(200))
        # Then the same moving square is below it
        assert 0 < moved["output"]["motion"] < 0.5
        assert moved["output"]["motion_detected"] is False
        assert [e for e in await motion_seen(kernel, motion_events) if e["user_id"] == user] == []


class TestHostileFrames:
    @pytest.mark.parametrize(
        ("data", "code"),
        [(bomb_png(100_000, 100_000), "decompression_bomb"), (truncated_jpeg(), "invalid_image")],
        ids=["decompression-bomb", "truncated-jpeg"],
    )
    async def test_a_bad_image_fails_its_task_at_once_and_the_next_frame_is_served(
        self, kernel: Kernel, client: Client, user: str, data: bytes, code: str
    ) -> None:
        bad = await analysed(kernel, client, user, "gate", data)
        assert bad["status"] == "failed"
        assert bad["error"]["code"] == code
        assert bad["error"]["retryable"] is False
        assert bad["attempts"] == 1  # permanent: no retries
        good = await analysed(kernel, client, user, "gate", frame(40))
        assert good["status"] == "completed"
        assert [a["frame_id"] for a in await analyses(client, user, "gate")] == [
            good["output"]["frame_id"]
        ]

    async def test_a_frame_of_another_user_is_not_analysed(
        self, kernel: Kernel, client: Client, user: str
    ) -> None:
        # A message is untrusted: a task naming someone else's frame finds nothing to analyse.
        theirs = await analysed(kernel, client, f"{user}-other", "gate", frame(40))
        new = NewTask(
            type=TaskType.CAMERA,
            user_id=user,
            max_attempts=1,
            input={"frame_id": theirs["output"]["frame_id"]},
        )
        # (Only a chat message may create its task from a message: this one has its row.)
        async with kernel.pool.acquire() as conn:
            await kernel.store.insert_task(conn, new, relay_grace_s=0)
        task = await wait_status(kernel, new.task_id, "failed")
        assert task["error"]["code"] == "frame_not_found"


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


class TestCameraRoutes:
    async def test_a_body_that_is_not_jpeg_or_png_is_415(self, client: Client, user: str) -> None:
        gif = io.BytesIO()
        Image.new("RGB", (4, 4)).save(gif, format="GIF")
        for body in (gif.getvalue(), b"hello", b""):
            resp = await client.post("/api/cameras/c/frames", data=body, headers=auth(user))
            assert (await error_of(resp, 415))["code"] == "unsupported_media_type"
        # A JPEG declared as text is still a JPEG: the bytes decide, not the header
        resp = await client.post(
            "/api/cameras/c/frames",
            data=frame(1),
            headers={**auth(user), "Content-Type": "text/plain"},
        )
        assert resp.status == 202

    async def test_a_frame_over_the_limit_is_413_counted_or_streamed(
        self, kernel: Kernel, client: Client, user: str
    ) -> None:
        limit = kernel.settings.camera_max_frame_bytes
        big = frame(1) + b"\x00" * limit
        resp = await client.post("/api/cameras/c/frames", data=big, headers=auth(user))
        assert (await error_of(resp, 413))["code"] == "too_large"

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to trust
            for _ in range(limit // 65536 + 2):
                yield b"\xff\xd8\xff" + b"\x00" * 65533

        resp = await client.post("/api/cameras/c/frames", data=chunked(), headers=auth(user))
        assert (await error_of(resp, 413))["code"] == "too_large"

    async def test_a_frame_larger_than_the_json_body_limit_is_accepted(
        self, kernel: Kernel, client: Client, user: str
    ) -> None:
        noise = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))
        png = io.BytesIO()
        noise.save(png, format="PNG")
        assert 1024 * 1024 < len(png.getvalue()) < kernel.settings.camera_max_frame_bytes
        task = await analysed(kernel, client, user, "big", png.getvalue())
        assert task["status"] == "completed"
        assert (task["output"]["width"], task["output"]["format"]) == (700, "PNG")

    @pytest.mark.parametrize(
        "body",
        [
            {"snapshot_url": "ftp://cam/snap.jpg", "interval_s": 5, "enabled": True},
            {"snapshot_url": "/snap.jpg", "interval_s": 5, "enabled": True},
            {"snapshot_url": "http://cam/snap.jpg", "interval_s": 0, "enabled": True},
            {"snapshot_url": "http://cam/snap.jpg", "interval_s": 86401, "enabled": True},
            {"snapshot_url": "http://cam/snap.jpg", "interval_s": "often", "enabled": True},
            {"interval_s": 5, "enabled": True},
            {"snapshot_url": "http://cam/snap.jpg", "motion_threshold": 2},
            {"snapshot_url": "http://cam/snap.jpg", "surprise": 1},
            ["not", "an", "object"],
        ],
    )
    async def test_bad_camera_settings_are_422(self, client: Client, user: str, body: Any) -> None:
        resp = await client.put("/api/cameras/c", json=body, headers=auth(user))
        assert (await error_of(resp, 422))["code"] == "invalid_request"

    async def test_settings_that_are_not_json_are_400(self, client: Client, user: str) -> None:
        resp = await client.put("/api/cameras/c", data=b"{nope", headers=auth(user))
        assert (await error_of(resp, 400))["code"] == "bad_json"

    async def test_repeating_a_put_keeps_the_schedule_and_a_change_restarts_it(
        self, client: Client, user: str
    ) -> None:
        async def put(**changes: Any) -> dict[str, Any]:
            body = {"snapshot_url": "http://127.0.0.1:9/snap.jpg", "interval_s": 3600,
                    "enabled": True, **changes}  # fmt: skip
            resp = await client.put("/api/cameras/c", json=body, headers=auth(user))
            camera: dict[str, Any] = await resp.json()
            assert resp.status == 200, camera
            return camera

        first, again = await put(), await put()
        assert first["next_capture_at"] is not None
        assert again["next_capture_at"] == first["next_capture_at"]
        assert (again["interval_s"], again["enabled"]) == (3600, True)
        changed = await put(interval_s=600)
        assert changed["next_capture_at"] > first["next_capture_at"]
        off = await put(enabled=False)
        assert (off["enabled"], off["next_capture_at"]) == (False, None)

    async def test_cameras_belong_to_their_user(
        self, kernel: Kernel, client: Client, user: str
    ) -> None:
        await analysed(kernel, client, user, "mine", frame(40))
        other = f"{user}-b"
        for path in ("/api/cameras/mine", "/api/cameras/mine/analyses"):
            resp = await client.get(path, headers=auth(other))
            assert (await error_of(resp, 404))["code"] == "not_found"
            resp = await client.get(f"{path}?user_id={user}", headers=auth(other))
            assert (await error_of(resp, 404))["code"] == "not_found"
            resp = await client.get(f"{path}?user_id={user}", headers=auth("svc", "service"))
            assert resp.status == 200
        # The same camera_id is another camera for another user
        resp = await client.put("/api/cameras/mine", json={"enabled": False}, headers=auth(other))
        assert resp.status == 200
        assert await analyses(client, other, "mine") == []
        assert len(await analyses(client, user, "mine")) == 1
        # Acting for another user is forbidden for a user token
        resp = await client.post(
            f"/api/cameras/mine/frames?user_id={user}", data=frame(1), headers=auth(other)
        )
        assert (await error_of(resp, 403))["code"] == "forbidden"
        resp = await client.put(
            f"/api/cameras/mine?user_id={user}", json={"enabled": False}, headers=auth(other)
        )
        assert (await error_of(resp, 403))["code"] == "forbidden"

    @pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=many", "surprise=1"])
    async def test_bad_queries_are_422(
        self, kernel: Kernel, client: Client, user: str, query: str
    ) -> None:
        await client.put("/api/cameras/q", json={"enabled": False}, headers=auth(user))
        resp = await client.get(f"/api/cameras/q/analyses?{query}", headers=auth(user))
        await error_of(resp, 422)

    async def test_a_bad_camera_id_is_422_and_no_token_is_401(
        self, client: Client, user: str
    ) -> None:
        resp = await client.post("/api/cameras/a%20b/frames", data=frame(1), headers=auth(user))
        assert (await error_of(resp, 422))["code"] == "invalid_request"
        resp = await client.get("/api/cameras/c/analyses")
        assert (await error_of(resp, 401))["code"] == "unauthorized"

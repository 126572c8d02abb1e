"""Periodic capture in one process: the scheduler, the real handler and a real camera served by
the test. A camera that stops answering gets failed tasks with the reason; the schedule goes on."""

import dataclasses
import itertools
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from uuid import uuid4

import pytest

from camera_worker.capture import CameraRefused, CameraUnreachable, fetch_snapshot
from camera_worker.handlers import handle_frame
from camera_worker.scheduler import CaptureScheduler
from camera_worker.settings import CameraWorkerSettings
from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.runtime.kernel import Kernel
from tests.camera_server import FakeCamera
from tests.conftest import free_port, wait_for
from tests.integration.conftest import ConsumerFactory

CAMERA = QUEUES[TaskType.CAMERA]


@pytest.fixture
async def camera() -> AsyncIterator[FakeCamera]:
    cam = FakeCamera()
    await cam.start()
    yield cam
    await cam.stop()


class TestFetchSnapshot:
    async def test_a_snapshot_is_fetched(self, camera: FakeCamera) -> None:
        data = await fetch_snapshot(camera.url, timeout_s=5, max_bytes=1_000_000)
        assert data.startswith(b"\xff\xd8\xff")
        assert len(camera.requests) == 1

    async def test_a_camera_that_does_not_answer_is_retryable_with_the_reason(
        self, camera: FakeCamera
    ) -> None:
        camera.mode = "hang"
        with pytest.raises(CameraUnreachable, match=r"within 0.3s"):
            await fetch_snapshot(camera.url, timeout_s=0.3, max_bytes=1_000_000)
        camera.mode = "error"
        with pytest.raises(CameraUnreachable, match="HTTP 503"):
            await fetch_snapshot(camera.url, timeout_s=5, max_bytes=1_000_000)
        closed = f"http://127.0.0.1:{free_port()}/snapshot.jpg"
        with pytest.raises(CameraUnreachable, match="did not answer: ClientConnectorError"):
            await fetch_snapshot(closed, timeout_s=5, max_bytes=1_000_000)

    async def test_a_wrong_answer_is_permanent(self, camera: FakeCamera) -> None:
        with pytest.raises(CameraRefused, match="HTTP 404"):
            await fetch_snapshot(camera.url + ".missing", timeout_s=5, max_bytes=1_000_000)
        with pytest.raises(CameraRefused, match="exceeds the 100 allowed"):
            await fetch_snapshot(camera.url, timeout_s=5, max_bytes=100)
        camera.mode = "chunked"
        with pytest.raises(CameraRefused, match="exceeds the 100 bytes allowed"):
            await fetch_snapshot(camera.url, timeout_s=5, max_bytes=100)
        assert len(await fetch_snapshot(camera.url, timeout_s=5, max_bytes=100_000)) > 100


async def captures(kernel: Kernel, user: str) -> list[dict[str, Any]]:
    rows = await kernel.pool.fetch(
        "SELECT f.slot_at, t.status, t.error, t.attempts FROM camera_frames f"
        " JOIN tasks t ON t.id = f.task_id WHERE f.user_id = $1 ORDER BY f.slot_at",
        user,
    )
    return [dict(r) for r in rows]


async def until(kernel: Kernel, user: str, status: str, count: int) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        rows = await captures(kernel, user)
        return rows if sum(r["status"] == status for r in rows) >= count else None

    return await wait_for(probe, timeout_s=15, what=f"{count} {status} captures")  # type: ignore[no-any-return]


class TestPeriodicCapture:
    async def test_a_camera_that_stops_answering_fails_its_slots_and_the_schedule_goes_on(
        self, kernel: Kernel, consume: ConsumerFactory, camera: FakeCamera
    ) -> None:
        # Given a scheduler and a consumer whose captures give up after 0.5 s
        settings = CameraWorkerSettings.of(kernel.settings, camera_capture_timeout_s=0.5)
        fast = dataclasses.replace(kernel, settings=settings)
        await consume(partial(handle_frame, kernel=fast), spec=CAMERA)
        kernel.supervisor.spawn("camera-scheduler", CaptureScheduler(fast).run)
        user = f"cap-{uuid4().hex[:8]}"
        await kernel.pool.execute(
            "INSERT INTO cameras (user_id, camera_id, snapshot_url, interval_s, enabled,"
            " next_capture_at) VALUES ($1, 'door', $2, 1, true, now())",
            user,
            camera.url,
        )
        try:
            # When the camera answers, then hangs, then answers again
            await until(kernel, user, "completed", 1)
            camera.mode = "hang"
            so_far = await until(kernel, user, "failed", 2)
            camera.mode = "ok"
            completed = sum(r["status"] == "completed" for r in so_far)
            rows = await until(kernel, user, "completed", completed + 1)
        finally:
            await kernel.pool.execute("UPDATE cameras SET enabled = false WHERE user_id = $1", user)
        # Then each silent slot failed at once, with the reason, and the next slot was served
        for row in (r for r in rows if r["status"] == "failed"):
            assert row["error"]["code"] == "camera_unreachable"
            assert "did not answer within 0.5s" in row["error"]["message"]
            assert row["attempts"] == 1
        # And no slot was skipped or doubled meanwhile: one capture per second of the grid
        slots = [r["slot_at"] for r in rows]
        assert len(slots) == len(set(slots))
        assert {(b - a).total_seconds() for a, b in itertools.pairwise(slots)} == {1.0}

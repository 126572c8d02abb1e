"""Motion between a camera's frames: a moving square is motion and publishes a motion event,
two identical frames are no motion and no event, and the threshold is the camera's own."""

import pytest
from aio_pika.abc import AbstractQueue

from camera_worker.settings import CameraWorkerSettings
from taskfleet.runtime.kernel import Kernel
from tests.camera_images import frame
from tests.integration.camera_analysis.helpers import Client, analysed, analyses, auth, motion_seen


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

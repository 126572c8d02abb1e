"""A hostile image fails its own task at once and the next frame is served; a frame of another
user is not analysed."""

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
from tests.camera_images import bomb_png, frame, truncated_jpeg
from tests.integration.camera_analysis.helpers import Client, analysed, analyses
from tests.integration.conftest import wait_status


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

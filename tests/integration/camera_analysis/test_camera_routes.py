"""The camera routes' answers: a frame that is not JPEG or PNG is 415, one over the limit 413
(however sent), bad camera settings 422 or 400, bad queries and camera ids 422, no token 401;
a repeated PUT keeps the schedule and a change restarts it; cameras belong to their user."""

import io
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from taskfleet.runtime.kernel import Kernel
from tests.camera_images import frame
from tests.integration.camera_analysis.helpers import Client, analysed, analyses, auth, error_of


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

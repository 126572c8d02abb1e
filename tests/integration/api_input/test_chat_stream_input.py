"""Bad input to POST /api/chat/stream gets the right 4xx with the error body, never a 500
(DESIGN.md §7): schema errors, a body that is not JSON or not an object, too big a body or
content; a user token acts only for its user, a service token for any, idempotently."""

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from fleet_api.settings import ApiSettings
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_input.helpers import ALICE, SERVICE, error_of


class TestChatStreamInput:
    @pytest.mark.parametrize(
        ("payload", "where"),
        [
            ({"content": "hi"}, "chat_id"),
            ({"chat_id": "c"}, "content"),
            ({"chat_id": 5, "content": "hi"}, "chat_id"),
            ({"chat_id": "c", "content": ["hi"]}, "content"),
            ({"chat_id": "c", "content": ""}, "content"),
            ({"chat_id": "c", "content": "hi", "surprise": 1}, "surprise"),
            ({"chat_id": "has spaces", "content": "hi"}, "chat_id"),
        ],
    )
    async def test_schema_errors_are_422_naming_the_field(
        self, client: TestClient[web.Request, web.Application], payload: dict[str, Any], where: str
    ) -> None:
        resp = await client.post("/api/chat/stream", json=payload, headers=ALICE)
        err = await error_of(resp, 422)
        assert err["code"] == "invalid_request"
        assert any(where in d["loc"] for d in err["details"])

    async def test_body_that_is_not_json_is_400(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        resp = await client.post("/api/chat/stream", data=b"{nope", headers=ALICE)
        assert (await error_of(resp, 400))["code"] == "bad_json"

    async def test_json_that_is_not_an_object_is_422(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        resp = await client.post("/api/chat/stream", data=b"[1, 2]", headers=ALICE)
        await error_of(resp, 422)

    async def test_huge_body_is_413(self, client: TestClient[web.Request, web.Application]) -> None:
        big = {"chat_id": "c", "content": "x" * (2 * 1024 * 1024)}
        resp = await client.post("/api/chat/stream", json=big, headers=ALICE)
        assert (await error_of(resp, 413))["code"] == "too_large"

    async def test_content_over_the_limit_is_422(
        self, client: TestClient[web.Request, web.Application], kernel: Kernel
    ) -> None:
        long = "y" * (ApiSettings.of(kernel.settings).max_content_chars + 1)
        resp = await client.post(
            "/api/chat/stream", json={"chat_id": "c", "content": long}, headers=ALICE
        )
        assert (await error_of(resp, 422))["code"] == "content_too_long"

    async def test_user_token_cannot_act_for_another_user(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        payload = {"chat_id": "c", "content": "hi", "user_id": "bob"}
        resp = await client.post("/api/chat/stream", json=payload, headers=ALICE)
        assert (await error_of(resp, 403))["code"] == "forbidden"

    async def test_service_token_acts_for_a_user_and_idempotency_key_gives_same_task(
        self, client: TestClient[web.Request, web.Application], kernel: Kernel
    ) -> None:
        payload = {"chat_id": "c", "content": "hi", "user_id": "carol", "idempotency_key": "k-1"}
        first = await client.post("/api/chat/stream", json=payload, headers=SERVICE)
        second = await client.post("/api/chat/stream", json=payload, headers=SERVICE)
        a, b = await first.json(), await second.json()
        assert (first.status, second.status) == (202, 202)
        assert a["task_id"] == b["task_id"]
        assert a["message_id"] == b["message_id"]
        task = await kernel.store.get_task(a["task_id"])
        assert task is not None
        assert task["user_id"] == "carol"

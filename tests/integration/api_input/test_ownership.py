"""Another user's task and chat answer 404, unknown ids and routes 404, a wrong method 405, each
with the error body (DESIGN.md §7)."""

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.integration.api_input.helpers import ALICE, BOB, error_of


class TestOwnership:
    async def test_another_users_task_and_chat_answer_404(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        resp = await client.post(
            "/api/chat/stream", json={"chat_id": "secret", "content": "mine"}, headers=ALICE
        )
        task_id = (await resp.json())["task_id"]
        assert (await client.get(f"/api/tasks/{task_id}", headers=ALICE)).status == 200
        await error_of(await client.get(f"/api/tasks/{task_id}", headers=BOB), 404)
        bob_view = await client.get("/api/chats/secret/messages", headers=BOB)
        assert (await bob_view.json())["messages"] == []
        alice_view = await client.get("/api/chats/secret/messages", headers=ALICE)
        assert [m["role"] for m in (await alice_view.json())["messages"]] == ["user", "assistant"]
        forged = await client.get("/api/chats/secret/messages?user_id=alice", headers=BOB)
        await error_of(forged, 404)

    @pytest.mark.parametrize("path", ["/api/tasks/not-a-uuid", "/api/tasks/", "/api/nothing"])
    async def test_unknown_ids_and_routes_are_404(
        self, client: TestClient[web.Request, web.Application], path: str
    ) -> None:
        await error_of(await client.get(path, headers=ALICE), 404)

    async def test_wrong_method_is_405_with_error_body(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        await error_of(await client.delete("/api/chat/stream", headers=ALICE), 405)

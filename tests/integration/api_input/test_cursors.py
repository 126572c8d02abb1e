"""Listing cursors and queries (DESIGN.md §7): a cursor out of range is 400 bad_cursor, a long
query of non-ASCII text gets the JSON error body, and a page's cursor still leads to the next."""

import base64
from uuid import uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.integration.api_input.helpers import ALICE, SERVICE, error_of


def _cursor(at: str) -> str:
    raw = f"{at}|{uuid4()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class TestCursors:
    @pytest.mark.parametrize(
        "at",
        ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "2024-01-01T00:00:00",
         "99999-01-01T00:00:00+00:00", "not a time"],
    )  # fmt: skip
    async def test_a_cursor_out_of_range_is_400_bad_cursor(
        self, client: TestClient[web.Request, web.Application], at: str
    ) -> None:
        for path, headers in (("/api/tasks", ALICE), ("/api/tasks/user/alice", SERVICE)):
            resp = await client.get(path, params={"cursor": _cursor(at)}, headers=headers)
            assert (await error_of(resp, 400))["code"] == "bad_cursor"

    async def test_a_long_query_of_non_ascii_text_gets_the_json_error_body(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        # 1,000 four-byte characters: 12 KB percent-encoded, over aiohttp's own 8190 bytes.
        resp = await client.get("/api/tasks", params={"cursor": "\U0001f600" * 1000}, headers=ALICE)
        assert (await error_of(resp, 422))["code"] == "invalid_query"

    async def test_the_cursor_of_a_page_still_leads_to_the_next(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        user = f"pager-{uuid4().hex[:8]}"
        for i in range(3):
            resp = await client.post(
                "/api/chat/stream",
                json={"chat_id": "c", "content": f"{i}", "user_id": user},
                headers=SERVICE,
            )
            assert resp.status == 202
        first = await (await client.get(f"/api/tasks/user/{user}?limit=2", headers=SERVICE)).json()
        resp = await client.get(
            f"/api/tasks/user/{user}",
            headers=SERVICE,
            params={"limit": 2, "cursor": first["next_cursor"]},
        )
        rest = await resp.json()
        assert resp.status == 200, rest
        assert len(first["tasks"]) + len(rest["tasks"]) == 3
        assert rest["next_cursor"] is None

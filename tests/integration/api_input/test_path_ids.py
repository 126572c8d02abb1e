"""A malformed id in the path of any route is 404 or 422 with the error body, never a 500: a
service token naming a malformed user, a NUL in a chat id (DESIGN.md §7)."""

import re
from uuid import uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from fleet_api.routes import OPENAPI
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET
from tests.integration.api_input.helpers import ALICE, SERVICE, error_of

ADMIN = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'ops', scope='admin')}"}

# A well-formed value of each path parameter, for the parameters a test does not break.
GOOD = {"user_id": "alice", "chat_id": "c", "camera_id": "cam", "queue": "chat_tasks",
        **{f"{name}_id": str(uuid4()) for name in
           ("task", "document", "webhook", "delivery", "schedule", "batch")}}  # fmt: skip


class TestPathIds:
    @pytest.mark.parametrize(
        "bad", ["a%00b", "has%20space", "x" * 129, "%C3%A9t%C3%A9", "a%0A", "%27%3B--"]
    )
    @pytest.mark.parametrize("headers", [ADMIN, SERVICE, ALICE], ids=["admin", "service", "user"])
    async def test_a_malformed_path_id_of_any_route_is_404_or_422_never_500(
        self, client: TestClient[web.Request, web.Application], bad: str, headers: dict[str, str]
    ) -> None:
        tried = 0
        for op in client.app[OPENAPI].operations:
            for name in re.findall(r"{(\w+)}", op.path):
                path = op.path.format(**{**GOOD, name: bad})
                resp = await client.request(op.method, URL(path, encoded=True), headers=headers)
                err = await error_of(resp, op.path_param(name).status)
                assert err["code"] in ("not_found", "invalid_request"), (op.path, err)
                tried += 1
        assert tried >= 13  # every route with an id in its path, each of its ids

    async def test_a_service_token_naming_a_malformed_user_gets_404(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        for path in ("/api/tasks/user/not%20a%20user", "/api/users/x%00y/memories"):
            resp = await client.get(URL(path, encoded=True), headers=SERVICE)
            assert (await error_of(resp, 404))["code"] == "not_found"

    async def test_a_nul_in_a_chat_id_is_404(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        resp = await client.get(URL("/api/chats/a%00b/messages", encoded=True), headers=ALICE)
        assert (await error_of(resp, 404))["message"] == "chat not found"

"""Bad input to the API gets the right 4xx with the error body; never a 500 (DESIGN.md §7)."""

import base64
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from fleet_api.app import create_app
from fleet_api.errors import error_middleware
from fleet_api.routes import OPENAPI
from fleet_api.settings import ApiSettings
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import AUDIENCE, ISSUER, issue_token, verify_token
from taskfleet.store.revocation import revoke
from tests.conftest import JWT_SECRET, wait_for

ALICE = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'alice')}"}
BOB = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'bob')}"}
SERVICE = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'backend', scope='service')}"}


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[TestClient[Any, Any]]:
    async def no_publish(queue: str, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
        """Nothing consumes in these tests; keep the queue empty for the others."""

    async with TestClient(TestServer(create_app(kernel, publish=no_publish))) as c:
        yield c


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


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
        self, client: TestClient[Any, Any], payload: dict[str, Any], where: str
    ) -> None:
        resp = await client.post("/api/chat/stream", json=payload, headers=ALICE)
        err = await error_of(resp, 422)
        assert err["code"] == "invalid_request"
        assert any(where in d["loc"] for d in err["details"])

    async def test_body_that_is_not_json_is_400(self, client: TestClient[Any, Any]) -> None:
        resp = await client.post("/api/chat/stream", data=b"{nope", headers=ALICE)
        assert (await error_of(resp, 400))["code"] == "bad_json"

    async def test_json_that_is_not_an_object_is_422(self, client: TestClient[Any, Any]) -> None:
        resp = await client.post("/api/chat/stream", data=b"[1, 2]", headers=ALICE)
        await error_of(resp, 422)

    async def test_huge_body_is_413(self, client: TestClient[Any, Any]) -> None:
        big = {"chat_id": "c", "content": "x" * (2 * 1024 * 1024)}
        resp = await client.post("/api/chat/stream", json=big, headers=ALICE)
        assert (await error_of(resp, 413))["code"] == "too_large"

    async def test_content_over_the_limit_is_422(
        self, client: TestClient[Any, Any], kernel: Kernel
    ) -> None:
        long = "y" * (ApiSettings.of(kernel.settings).max_content_chars + 1)
        resp = await client.post(
            "/api/chat/stream", json={"chat_id": "c", "content": long}, headers=ALICE
        )
        assert (await error_of(resp, 422))["code"] == "content_too_long"

    async def test_user_token_cannot_act_for_another_user(
        self, client: TestClient[Any, Any]
    ) -> None:
        payload = {"chat_id": "c", "content": "hi", "user_id": "bob"}
        resp = await client.post("/api/chat/stream", json=payload, headers=ALICE)
        assert (await error_of(resp, 403))["code"] == "forbidden"

    async def test_service_token_acts_for_a_user_and_idempotency_key_gives_same_task(
        self, client: TestClient[Any, Any], kernel: Kernel
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


def _signed(algorithm: str = "HS256", **claims: Any) -> str:
    """A hand-built token: valid but for what the test changes (None drops a claim)."""
    full = {"sub": "alice", "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE,
            "jti": "j-1", **claims}  # fmt: skip
    key = None if algorithm == "none" else JWT_SECRET
    return jwt.encode({k: v for k, v in full.items() if v is not None}, key, algorithm=algorithm)


class TestAuth:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer not-a-jwt"},
            {"Authorization": "Basic YWxpY2U6cHc="},
            {"Authorization": f"Bearer {issue_token('wrong-secret-' + 'z' * 32, 'alice')}"},
            {"Authorization": f"Bearer {_signed(exp=int(time.time()) - 10)}"},
            {"Authorization": f"Bearer {_signed(exp=None)}"},
            {"Authorization": f"Bearer {_signed(aud='another-api')}"},
            {"Authorization": f"Bearer {_signed(iss='someone-else')}"},
            {"Authorization": f"Bearer {_signed(algorithm='none')}"},
        ],
        ids=[
            "missing",
            "garbage",
            "basic",
            "wrong-secret",
            "expired",
            "no-exp",
            "wrong-audience",
            "wrong-issuer",
            "alg-none",
        ],
    )
    async def test_bad_tokens_are_401(
        self, client: TestClient[Any, Any], headers: dict[str, str]
    ) -> None:
        resp = await client.post(
            "/api/chat/stream", json={"chat_id": "c", "content": "hi"}, headers=headers
        )
        assert (await error_of(resp, 401))["code"] == "unauthorized"

    async def test_a_revoked_token_is_refused_within_the_refresh_interval(
        self, kernel: Kernel, client: TestClient[Any, Any]
    ) -> None:
        token = issue_token(JWT_SECRET, "dave")
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/tasks", headers=headers)).status == 200
        who = verify_token(JWT_SECRET, token)
        await revoke(kernel.pool, who.jti, who.expires_at, reason="test")

        async def refused() -> bool:
            resp = await client.get("/api/tasks", headers=headers)
            return resp.status == 401 and "revoked" in (await resp.json())["error"]["message"]

        await wait_for(refused, what="the revoked token to be refused", timeout_s=10)
        other = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'dave')}"}
        assert (await client.get("/api/tasks", headers=other)).status == 200

    async def test_health_routes_need_no_token(self, client: TestClient[Any, Any]) -> None:
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["checks"] == {"database": True, "broker": True}

    async def test_metrics_are_not_served_to_clients(self, client: TestClient[Any, Any]) -> None:
        """They are on API_METRICS_PORT (tests/e2e/test_api_process.py)."""
        await error_of(await client.get("/metrics"), 401)
        await error_of(await client.get("/metrics", headers=ALICE), 404)


class TestOwnership:
    async def test_another_users_task_and_chat_answer_404(
        self, client: TestClient[Any, Any]
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
        self, client: TestClient[Any, Any], path: str
    ) -> None:
        await error_of(await client.get(path, headers=ALICE), 404)

    async def test_wrong_method_is_405_with_error_body(self, client: TestClient[Any, Any]) -> None:
        await error_of(await client.delete("/api/chat/stream", headers=ALICE), 405)


ADMIN = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'ops', scope='admin')}"}
# A well-formed value of each path parameter, for the parameters a test does not break.
GOOD = {"task_id": str(uuid4()), "document_id": str(uuid4()), "user_id": "alice",
        "chat_id": "c", "camera_id": "cam", "queue": "chat_tasks"}  # fmt: skip


class TestPathIds:
    @pytest.mark.parametrize(
        "bad", ["a%00b", "has%20space", "x" * 129, "%C3%A9t%C3%A9", "a%0A", "%27%3B--"]
    )
    @pytest.mark.parametrize("headers", [ADMIN, SERVICE, ALICE], ids=["admin", "service", "user"])
    async def test_a_malformed_path_id_of_any_route_is_404_or_422_never_500(
        self, client: TestClient[Any, Any], bad: str, headers: dict[str, str]
    ) -> None:
        tried = 0
        for op in client.server.app[OPENAPI].operations:
            for name in re.findall(r"{(\w+)}", op.path):
                path = op.path.format(**{**GOOD, name: bad})
                resp = await client.request(op.method, URL(path, encoded=True), headers=headers)
                err = await error_of(resp, op.path_param(name).status)
                assert err["code"] in ("not_found", "invalid_request"), (op.path, err)
                tried += 1
        assert tried >= 13  # every route with an id in its path, each of its ids

    async def test_a_service_token_naming_a_malformed_user_gets_404(
        self, client: TestClient[Any, Any]
    ) -> None:
        for path in ("/api/tasks/user/not%20a%20user", "/api/users/x%00y/memories"):
            resp = await client.get(URL(path, encoded=True), headers=SERVICE)
            assert (await error_of(resp, 404))["code"] == "not_found"

    async def test_a_nul_in_a_chat_id_is_404(self, client: TestClient[Any, Any]) -> None:
        resp = await client.get(URL("/api/chats/a%00b/messages", encoded=True), headers=ALICE)
        assert (await error_of(resp, 404))["message"] == "chat not found"


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
        self, client: TestClient[Any, Any], at: str
    ) -> None:
        for path, headers in (("/api/tasks", ALICE), ("/api/tasks/user/alice", SERVICE)):
            resp = await client.get(path, params={"cursor": _cursor(at)}, headers=headers)
            assert (await error_of(resp, 400))["code"] == "bad_cursor"

    async def test_a_long_query_of_non_ascii_text_gets_the_json_error_body(
        self, client: TestClient[Any, Any]
    ) -> None:
        # 1,000 four-byte characters: 12 KB percent-encoded, over aiohttp's own 8190 bytes.
        resp = await client.get("/api/tasks", params={"cursor": "\U0001f600" * 1000}, headers=ALICE)
        assert (await error_of(resp, 422))["code"] == "invalid_query"

    async def test_the_cursor_of_a_page_still_leads_to_the_next(
        self, client: TestClient[Any, Any]
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


async def test_a_data_error_from_postgresql_is_422_not_500(kernel: Kernel) -> None:
    """The last line of defence: a value that reached PostgreSQL and that it refused."""

    async def store_text(request: web.Request) -> web.Response:
        await kernel.pool.fetchval("SELECT $1::text", request.query["text"])
        return web.Response(status=204)

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/echo", store_text)
    async with TestClient(TestServer(app)) as c:
        resp = await c.get(URL("/echo?text=a%00b", encoded=True))
        err = await error_of(resp, 422)
        assert err["code"] == "invalid_request"
        assert err["details"]["sqlstate"].startswith("22")  # class 22: data exception
        assert (await c.get("/echo?text=fine")).status == 204

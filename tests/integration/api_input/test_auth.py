"""Tokens (DESIGN.md §7): bad ones are 401 with the error body, a revoked one is refused within
the refresh interval; the health routes need none, and /metrics is not served to clients."""

import time
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import AUDIENCE, ISSUER, issue_token, verify_token
from taskfleet.store.revocation import revoke
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.api_input.helpers import ALICE, error_of


def _signed(algorithm: str = "HS256", **claims: Any) -> str:
    """A hand-built token: valid but for what the test changes (None drops a claim)."""
    full = {"sub": "alice", "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE,
            "jti": "j-1", **claims}  # fmt: skip
    key = None if algorithm == "none" else JWT_SECRET
    # PyJWT's annotation wants a key, but the "none" algorithm takes None (its docs' example).
    payload = {k: v for k, v in full.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm)  # type: ignore[arg-type]


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
        self, client: TestClient[web.Request, web.Application], headers: dict[str, str]
    ) -> None:
        resp = await client.post(
            "/api/chat/stream", json={"chat_id": "c", "content": "hi"}, headers=headers
        )
        assert (await error_of(resp, 401))["code"] == "unauthorized"

    async def test_a_revoked_token_is_refused_within_the_refresh_interval(
        self, kernel: Kernel, client: TestClient[web.Request, web.Application]
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

    async def test_health_routes_need_no_token(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 200
        body = await ready.json()
        assert (body["checks"], body["broker"]) == ({"database": True}, {"connected": True})

    async def test_metrics_are_not_served_to_clients(
        self, client: TestClient[web.Request, web.Application]
    ) -> None:
        """They are on API_METRICS_PORT (tests/e2e/test_api_process.py)."""
        await error_of(await client.get("/metrics"), 401)
        await error_of(await client.get("/metrics", headers=ALICE), 404)

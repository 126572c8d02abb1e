"""`POST /api/tokens`: a service token mints a short-lived user token that the API accepts as
that user, and nobody else's; a user token may not mint."""

import time
from datetime import datetime

import jwt

from taskfleet.runtime.kernel import Kernel
from tests.conftest import JWT_SECRET
from tests.integration.api_client import api, auth, new_user, submit


async def test_a_service_token_mints_a_user_token_the_api_takes_as_that_user(
    kernel: Kernel,
) -> None:
    user, other = new_user(), new_user()
    async with api(kernel) as client:
        theirs = (await submit(client, other))["task_id"]
        resp = await client.post(
            "/api/tokens", json={"user_id": user, "ttl_s": 120}, headers=auth("backend", "service")
        )
        minted = await resp.json()
        assert resp.status == 200, minted
        assert resp.headers["Cache-Control"] == "no-store"
        assert minted["user_id"] == user
        claims = jwt.decode(minted["token"], JWT_SECRET, algorithms=["HS256"],
                            audience=kernel.settings.jwt_audience)  # fmt: skip
        assert (claims["sub"], claims["scope"]) == (user, "user")
        assert abs(claims["exp"] - (time.time() + 120)) < 5
        assert datetime.fromisoformat(minted["expires_at"]).timestamp() == claims["exp"]

        as_user = {"Authorization": f"Bearer {minted['token']}"}
        mine = await client.post("/api/chat/stream", json={"chat_id": "c", "content": "hi"},
                                 headers=as_user)  # fmt: skip
        assert mine.status == 202
        task = await client.get(f"/api/tasks/{(await mine.json())['task_id']}", headers=as_user)
        assert (await task.json())["user_id"] == user
        # It speaks for its user alone: another user's task reads as absent.
        assert (await client.get(f"/api/tasks/{theirs}", headers=as_user)).status == 404


async def test_a_user_token_may_not_mint_and_bad_bodies_are_refused(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        refused = await client.post("/api/tokens", json={"user_id": user}, headers=auth(user))
        assert refused.status == 403
        assert (await refused.json())["error"]["code"] == "forbidden"
        for body in (
            {"user_id": user, "ttl_s": 10},
            {"user_id": user, "ttl_s": 10**6},
            {"user_id": "no spaces"},
            {"ttl_s": 60},
            {"user_id": user, "scope": "admin"},
        ):
            resp = await client.post("/api/tokens", json=body, headers=auth("b", "admin"))
            assert resp.status == 422, body
        assert (await client.post("/api/tokens", json={"user_id": user})).status == 401

"""The console's routes: pages and files under a strict Content-Security-Policy, `/` sent to
the console, the WebSocket's token as a subprotocol, and one-time sign-in codes that work
once, within their minute, and leave nothing usable in the database."""

import aiohttp
import pytest

from fleet_api.console import CSP, STATIC
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import TokenVerifier
from taskfleet.security.signin import lookup_of
from taskfleet.store.signin import put_code, redeem_code
from tests.conftest import JWT_SECRET, wait_for
from tests.integration.api_client import api, token

STRICT = ("script-src 'self';", "style-src 'self';", "default-src 'none'", "frame-ancestors 'none'")


class TestPages:
    @pytest.mark.parametrize(
        "path",
        [
            "/console/",
            "/docs",
            "/console/assets/console/js/app.js",
            "/console/assets/console/console.css",
            "/console/assets/vendor/swagger-ui/swagger-ui-bundle.js",
        ],
    )
    async def test_each_page_and_file_is_public_under_the_strict_policy(
        self, kernel: Kernel, path: str
    ) -> None:
        async with api(kernel) as client:
            resp = await client.get(path)
            body = await resp.read()
        assert resp.status == 200, path
        assert body
        policy = resp.headers["Content-Security-Policy"]
        assert policy == CSP
        assert all(part in policy for part in STRICT)
        assert "unsafe" not in policy
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"

    async def test_the_root_goes_to_the_console_and_the_pages_hold_no_inline_code(
        self, kernel: Kernel
    ) -> None:
        async with api(kernel) as client:
            root = await client.get("/", allow_redirects=False)
            page = await (await client.get("/console/")).text()
            missing = await client.get("/console/assets/nope.js")
            escape = await client.get("/console/assets/../console.py")
        assert (root.status, root.headers["Location"]) == (302, "/console/")
        assert '<script type="module" src="/console/assets/console/js/app.js">' in page
        for html in (page, (STATIC / "docs" / "index.html").read_text()):
            assert "<script>" not in html
            assert "<style" not in html
            assert " style=" not in html
            assert " on" + "click=" not in html
        assert missing.status == 404
        assert escape.status in (403, 404)

    async def test_the_api_answers_keep_their_own_headers(self, kernel: Kernel) -> None:
        async with api(kernel) as client:
            resp = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token('u')}"})
        assert resp.status == 200
        assert "Content-Security-Policy" not in resp.headers

    async def test_the_websocket_takes_its_token_as_a_subprotocol(self, kernel: Kernel) -> None:
        async with api(kernel) as client:
            ws = await client.ws_connect(
                "/ws/tasks", protocols=("taskfleet", f"bearer.{token('u')}")
            )
            first = await ws.receive_json()
            await ws.close()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws/tasks", protocols=("taskfleet", "bearer.nope"))
        assert ws.protocol == "taskfleet"
        assert first["type"] == "snapshot"
        assert refused.value.status == 401


class TestSignInCodes:
    async def test_a_code_gives_its_token_once(self, kernel: Kernel) -> None:
        minted = token("linda")
        code = await put_code(kernel.pool, minted)
        async with api(kernel) as client:
            first = await client.post("/api/console/session", json={"code": code})
            session = await first.json()
            again = await client.post("/api/console/session", json={"code": code})
            refused = await again.json()
        assert first.status == 200
        assert session == {"token": minted}
        assert first.headers["Cache-Control"] == "no-store"
        who = TokenVerifier(JWT_SECRET).verify(session["token"])
        assert who.user_id == "linda"
        assert again.status == 401
        assert refused["error"]["code"] == "invalid_code"

    async def test_an_expired_code_gives_nothing_and_is_deleted(self, kernel: Kernel) -> None:
        code = await put_code(kernel.pool, token("mo"), ttl_s=0.2)
        row = "SELECT expires_at <= now() FROM signin_codes WHERE lookup = $1"
        await wait_for(lambda: kernel.pool.fetchval(row, lookup_of(code)), what="the expiry")
        assert await redeem_code(kernel.pool, code) is None
        expired = "SELECT count(*) FROM signin_codes WHERE lookup = $1 OR expires_at <= now()"
        assert await kernel.pool.fetchval(expired, lookup_of(code)) == 0

    async def test_the_database_holds_neither_the_code_nor_the_token(self, kernel: Kernel) -> None:
        minted = token("nia")
        code = await put_code(kernel.pool, minted)
        rows = await kernel.pool.fetch("SELECT lookup, sealed FROM signin_codes")
        stored = b"".join(r["lookup"].encode() + bytes(r["sealed"]) for r in rows)
        assert code.encode() not in stored
        assert minted.encode() not in stored
        assert minted.split(".")[1].encode() not in stored  # not even the claims
        assert await redeem_code(kernel.pool, code) == minted

    @pytest.mark.parametrize(
        ("body", "status"),
        [({"code": "x" * 43}, 401), ({"code": "short"}, 422), ({}, 422), ({"code": 5}, 422)],
    )
    async def test_a_bad_code_is_a_client_error(
        self, kernel: Kernel, body: dict[str, object], status: int
    ) -> None:
        async with api(kernel) as client:
            resp = await client.post("/api/console/session", json=body)
            answer = await resp.json()
        assert resp.status == status
        assert "error" in answer

    async def test_making_a_code_clears_the_expired_ones(self, kernel: Kernel) -> None:
        stale = await put_code(kernel.pool, token("oz"), ttl_s=0.1)
        row = "SELECT expires_at <= now() FROM signin_codes WHERE lookup = $1"
        await wait_for(lambda: kernel.pool.fetchval(row, lookup_of(stale)), what="the expiry")
        fresh = await put_code(kernel.pool, token("oz"))
        left = "SELECT lookup FROM signin_codes WHERE lookup = ANY($1)"
        found = await kernel.pool.fetch(left, [lookup_of(stale), lookup_of(fresh)])
        assert [r["lookup"] for r in found] == [lookup_of(fresh)]

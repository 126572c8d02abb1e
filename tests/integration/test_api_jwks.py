"""RS256 tokens a backend signs itself, verified against its JWKS (JWT_JWKS_URL), through the
API: accepted with a key the set holds, a rotated key found without a restart, and no way for a
token to pick its own algorithm or key."""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fleet_api.auth import TOKENS
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.jwks import Jwks
from tests.integration.api_client import api, auth, new_user


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class KeyServer:
    """A JWKS endpoint whose key set the test changes; it counts the fetches."""

    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0
    broken: bool = False

    async def serve(self, _: web.Request) -> web.Response:
        self.fetches += 1
        if self.broken:
            return web.Response(status=503)
        jwks = []
        for kid, key in self.keys.items():
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            jwks.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": jwks})


@pytest.fixture
async def key_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[KeyServer]:
    server = KeyServer({"k1": _rsa()})
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", server.serve)
    async with TestServer(app) as http:
        monkeypatch.setenv("JWT_JWKS_URL", str(http.make_url("/.well-known/jwks.json")))
        yield server


def rs256(kernel: Kernel, key: rsa.RSAPrivateKey, kid: str, user: str, **claims: Any) -> str:
    now = int(time.time())
    settings = kernel.settings
    body = {"sub": user, "scope": "user", "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex,
            "iss": settings.jwt_issuer, "aud": settings.jwt_audience, **claims}  # fmt: skip
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def _hs256_by_hand(claims: dict[str, Any], secret: bytes) -> str:
    """What PyJWT itself refuses to sign: HS256 with a PEM public key as the secret."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = part(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{part(mac)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status_of(client: TestClient[web.Request, web.Application], token: str) -> int:
    return (await client.get("/api/tasks", headers=bearer(token))).status


async def test_a_backend_signed_token_acts_for_its_user(
    kernel: Kernel, key_server: KeyServer
) -> None:
    user = new_user()
    async with api(kernel) as client:
        token = rs256(kernel, key_server.keys["k1"], "k1", user)
        resp = await client.post("/api/chat/stream", json={"chat_id": "c", "content": "hi"},
                                 headers=bearer(token))  # fmt: skip
        assert resp.status == 202, await resp.text()
        task = await client.get(f"/api/tasks/{(await resp.json())['task_id']}",
                                headers=bearer(token))  # fmt: skip
        assert (await task.json())["user_id"] == user
        # The deployment's own HS256 tokens keep working beside them.
        assert (await client.get("/api/tasks", headers=auth(user))).status == 200


async def test_a_rotated_key_is_fetched_without_a_restart(
    kernel: Kernel, key_server: KeyServer
) -> None:
    async with api(kernel) as client:
        jwks = client.app[TOKENS].jwks
        assert jwks is not None
        fetched = key_server.fetches
        key_server.keys["k2"] = _rsa()
        rotated = rs256(kernel, key_server.keys["k2"], "k2", new_user())
        # Within MIN_REFETCH_S of the last fetch an unknown kid fetches nothing: 401.
        assert await status_of(client, rotated) == 401
        assert key_server.fetches == fetched
        jwks.min_refetch_s = 0
        assert await status_of(client, rotated) == 200
        assert key_server.fetches == fetched + 1


async def test_a_token_cannot_choose_its_key_or_algorithm(
    kernel: Kernel, key_server: KeyServer
) -> None:
    user = new_user()
    public_pem = (
        key_server.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    async with api(kernel) as client:
        forged = [
            rs256(kernel, _rsa(), "k1", user),  # another key under a kid the set holds
            rs256(kernel, key_server.keys["k1"], "k1", user, iss="someone-else"),
            rs256(kernel, key_server.keys["k1"], "k1", user, scope="root"),
        ]
        # The public key (which anyone may fetch) used as an HMAC secret: the confusion attack.
        claims = jwt.decode(forged[1], options={"verify_signature": False})
        claims["iss"] = kernel.settings.jwt_issuer
        forged.append(_hs256_by_hand(claims, public_pem))
        for token in forged:
            resp = await client.get("/api/tasks", headers=bearer(token))
            assert resp.status == 401, token
            assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_without_a_jwks_rs256_tokens_are_refused(kernel: Kernel) -> None:
    key = _rsa()
    async with api(kernel) as client:
        assert client.app[TOKENS].jwks is None
        assert await status_of(client, rs256(kernel, key, "k1", new_user())) == 401


async def test_a_key_server_down_at_start_is_tried_again(
    kernel: Kernel, key_server: KeyServer
) -> None:
    key_server.broken = True
    token = rs256(kernel, key_server.keys["k1"], "k1", new_user())
    async with api(kernel) as client:
        jwks = client.app[TOKENS].jwks
        assert jwks is not None
        assert jwks.keys == {}
        jwks.min_refetch_s = 0
        assert await status_of(client, token) == 401
        key_server.broken = False
        assert await status_of(client, token) == 200


async def test_a_bad_key_set_keeps_the_keys_held(key_server: KeyServer) -> None:
    jwks = Jwks(os.environ["JWT_JWKS_URL"], refresh_s=60)
    assert await jwks.refresh()
    assert set(jwks.keys) == {"k1"}
    key_server.broken = True
    assert not await jwks.refresh()
    assert set(jwks.keys) == {"k1"}

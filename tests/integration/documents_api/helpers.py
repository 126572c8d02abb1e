"""What the document-route tests share: the test client's type, the error body of a refusal,
and an accepted upload."""

from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.doc_fixtures import form
from tests.integration.api_client import auth

Client = TestClient[web.Request, web.Application]


async def error_of(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


async def upload(client: Client, user: str, data: bytes, **kw: Any) -> dict[str, Any]:
    resp = await client.post("/api/documents", data=form(data, **kw), headers=auth(user))
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    return body

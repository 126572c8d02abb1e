"""An in-process API on the test kernel (the real one: real RabbitMQ and PostgreSQL)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import Scope, issue_token
from tests.conftest import JWT_SECRET


def auth(user: str, scope: Scope = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(JWT_SECRET, user, scope=scope)}"}


def token(user: str, scope: Scope = "user") -> str:
    return issue_token(JWT_SECRET, user, scope=scope)


def new_user(prefix: str = "u") -> str:
    return f"{prefix}-{uuid4().hex[:8]}"


@asynccontextmanager
async def api(kernel: Kernel) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(create_app(kernel))) as client:
        yield client


async def submit(
    client: TestClient[web.Request, web.Application],
    user: str,
    content: str = "hello",
    chat: str = "c1",
) -> dict[str, Any]:
    resp = await client.post(
        "/api/chat/stream", json={"chat_id": chat, "content": content}, headers=auth(user)
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    return body

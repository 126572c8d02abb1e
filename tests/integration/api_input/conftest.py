"""Bad input to the API (DESIGN.md §7): an API client on the test kernel."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from taskfleet.runtime.kernel import Kernel


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def no_publish(queue: str, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
        """Nothing consumes in these tests; keep the queue empty for the others."""

    async with TestClient(TestServer(create_app(kernel, publish=no_publish))) as c:
        yield c

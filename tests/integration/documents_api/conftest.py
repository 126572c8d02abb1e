"""The document routes on their own (no worker): an API whose publish is a no-op, with settings
overrides, and a client of it."""

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from fleet_api.settings import ApiSettings
from taskfleet.runtime.kernel import Kernel
from tests.integration.documents_api.helpers import Client


@pytest.fixture
async def make_client(kernel: Kernel) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """An API whose publish is a no-op (nothing consumes here), with settings overrides."""
    clients: list[Client] = []

    async def no_publish(queue: str, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
        """The task and its outbox row are committed; keep the queue empty for other tests."""

    async def make(**overrides: Any) -> Client:
        k = kernel
        if overrides:
            k = dataclasses.replace(kernel, settings=ApiSettings.of(kernel.settings, **overrides))
        client: Client = TestClient(TestServer(create_app(k, publish=no_publish)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[Client]]) -> Client:
    return await make_client()

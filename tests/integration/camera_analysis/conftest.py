"""Frames through the real API, RabbitMQ, the camera handler and PostgreSQL: a user, an API client
with a camera consumer running, and the motion events that reach the user."""

from collections.abc import AsyncIterator
from functools import partial
from uuid import uuid4

import pytest
from aio_pika.abc import AbstractQueue
from aiohttp.test_utils import TestClient, TestServer

from camera_worker.handlers import MOTION_EVENT, handle_frame
from fleet_api.app import create_app
from taskfleet.core.constants import EVENTS_EXCHANGE
from taskfleet.runtime.kernel import Kernel
from tests.integration.camera_analysis.helpers import CAMERA, Client
from tests.integration.conftest import ConsumerFactory


@pytest.fixture
def user() -> str:
    return f"cam-{uuid4().hex[:8]}"


@pytest.fixture
async def client(kernel: Kernel, consume: ConsumerFactory) -> AsyncIterator[Client]:
    """The API with its real publish, and a camera consumer running the real handler."""
    await consume(partial(handle_frame, kernel=kernel), spec=CAMERA)
    async with TestClient(TestServer(create_app(kernel))) as c:
        yield c
    # Leave no camera capturing for the tests that follow (they share the database).
    await kernel.pool.execute("UPDATE cameras SET enabled = false, next_capture_at = NULL")


@pytest.fixture
async def motion_events(kernel: Kernel) -> AsyncIterator[AbstractQueue]:
    """Our own queue bound to the events exchange with routing key camera.motion."""
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    exchange = await channel.get_exchange(kernel.settings.queue(EVENTS_EXCHANGE))
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key=MOTION_EVENT)
    yield queue
    await channel.close()

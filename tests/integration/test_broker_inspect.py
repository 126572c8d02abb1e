"""Queue inspection survives what happens to the shared connection around it."""

import asyncio
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection

from taskfleet.broker import connection as connection_module
from taskfleet.broker import inspection
from taskfleet.runtime.kernel import Kernel

pytestmark = pytest.mark.rabbitmq


async def test_inspect_cancelled_while_closing_keeps_the_connection(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = kernel.settings.queue("chat_tasks")
    connection = kernel.broker.connection
    assert connection is not None
    closing = asyncio.Event()
    close = aio_pika.Channel.close

    async def close_and_tell(self: aio_pika.Channel, *args: Any) -> None:
        closing.set()
        await close(self, *args)

    monkeypatch.setattr(aio_pika.Channel, "close", close_and_tell)
    for _ in range(3):
        closing.clear()
        task = asyncio.ensure_future(kernel.broker.inspect([name]))
        await closing.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert set(await kernel.broker.inspect([name])) == {name}
        assert not connection.is_closed


async def test_inspect_waits_out_a_connection_closed_under_it(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = kernel.settings.queue("chat_tasks")
    dead = kernel.broker.connection
    assert dead is not None
    declare = inspection.declare_passively

    async def close_first(connection: AbstractConnection, names: list[str]) -> Any:
        if connection is dead:  # closed between the readiness check and the channel
            await dead.close()
        return await declare(connection, names)

    monkeypatch.setattr(connection_module, "declare_passively", close_first)
    assert set(await kernel.broker.inspect([name])) == {name}
    assert kernel.broker.connection is not dead

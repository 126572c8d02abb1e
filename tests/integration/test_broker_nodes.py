"""A process given several broker addresses connects to the first that answers."""

from typing import Any

import aio_pika
import pytest
from yarl import URL

from taskfleet.broker import nodes
from taskfleet.broker.connection import Broker
from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import Supervisor
from tests.conftest import free_port

pytestmark = pytest.mark.rabbitmq


def _dead_first(settings: Settings) -> tuple[Settings, str]:
    """The settings with a node that refuses connections listed before the real one."""
    real = URL(settings.amqp_url)
    dead = str(real.with_port(free_port()))
    both = settings.model_copy(update={"amqp_url": f"{dead},{settings.amqp_url}"})
    return both, f"{real.host}:{real.port}"


async def test_the_broker_skips_a_node_that_refuses(settings: Settings) -> None:
    both, real = _dead_first(settings)
    supervisor = Supervisor(name="test-nodes")
    broker = Broker(both, supervisor)
    try:
        await broker.start(wait_s=30)
        assert broker.ready
        assert broker.node == real
        await broker.publish(both.queue("chat_tasks.dlq"), b"{}", timeout_s=10)
    finally:
        await supervisor.aclose()
        await broker.close()
    await _drain(settings)


async def test_a_one_off_connection_skips_a_node_that_refuses(settings: Settings) -> None:
    both, _ = _dead_first(settings)
    connection = await nodes.connect(both)
    async with connection:
        assert not connection.is_closed


async def test_no_node_answering_raises_the_last_error(settings: Settings) -> None:
    dead = URL(settings.amqp_url).with_port(free_port())
    with pytest.raises(OSError, match="Connect call failed"):
        await nodes.connect_first([str(dead), str(dead)])


async def test_a_node_that_refuses_leaves_no_connection_open(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed connection is closed at once, not left for the collector (whose close, off the
    loop's thread, is a "coroutine never awaited" warning)."""
    made: list[aio_pika.Connection] = []
    init = aio_pika.Connection.__init__

    def recorded(self: aio_pika.Connection, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(aio_pika.Connection, "__init__", recorded)
    dead = URL(settings.amqp_url).with_port(free_port())
    with pytest.raises(OSError, match="Connect call failed"):
        await nodes.connect_first([str(dead)])
    assert len(made) == 1
    assert made[0].is_closed


async def _drain(settings: Settings) -> None:
    connection = await nodes.connect(settings)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(settings.queue("chat_tasks.dlq"))
        await queue.purge()

"""Connecting to one node of a RabbitMQ cluster: the first of AMQP_URL's addresses that answers.

The nodes are tried in turn from a given one, each once, with no pause between them: a node
that is down refuses at once, and another may answer. The caller retries the whole round
with its own backoff (taskfleet.broker.connection) or gives up (a one-shot connection).
"""

from collections.abc import Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection
from yarl import URL

from taskfleet.core.settings import Settings

log = structlog.get_logger("taskfleet.broker")

# What a node that is down, unreachable or refusing us raises.
UNREACHABLE = (OSError, aio_pika.exceptions.AMQPError, TimeoutError)


class _ClosedOnFailure(aio_pika.Connection):
    """aio-pika's connection, closed when it fails to connect. aio_pika.connect drops one that
    failed unclosed; whatever thread the collector then runs on schedules its close, and off
    the loop's thread that is a "coroutine never awaited" warning."""

    async def connect(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aio-pika's signature)
        try:
            await super().connect(timeout)
        except BaseException:
            await self.close()
            raise


def node_name(url: str | URL) -> str:
    """host:port of an address, for the logs (never its credentials)."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port or 5672}"


async def connect_first(
    urls: Sequence[str | URL], *, start: int = 0, **options: Any
) -> tuple[int, AbstractConnection]:
    """The index of the node that answered, from `start` on round the list, and its connection;
    the last node's error when none does."""
    error: BaseException | None = None
    for turn in range(len(urls)):
        index = (start + turn) % len(urls)
        try:
            return index, await aio_pika.connect(
                urls[index], timeout=10, connection_class=_ClosedOnFailure, **options
            )
        except UNREACHABLE as exc:
            if len(urls) > 1:
                log.warning("amqp_node_unreachable", node=node_name(urls[index]), error=repr(exc))
            error = exc
    assert error is not None, "no address to connect to"
    raise error


async def connect(settings: Settings, **options: Any) -> AbstractConnection:
    """A connection of its own to the first node that answers (tools, tests, benchmarks)."""
    _, connection = await connect_first(settings.amqp_urls, **options)
    return connection

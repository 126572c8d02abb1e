"""One AMQP connection per process, its channels, and confirmed publishing.

We use a plain `aio_pika.connect` inside our own supervised reconnect loop rather than
`connect_robust`, whose known gaps (consumers not restored after an unclean reconnect,
queues held weakly, publishes hanging while disconnected) are exactly the failures a durable
fleet must not have. Any lost channel closes the whole connection; the loop reconnects,
re-declares the topology and runs every `on_connect` hook again (consumers re-subscribe).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter
from yarl import URL

from taskfleet.broker.inspection import declare_passively
from taskfleet.broker.live import LivePublisher
from taskfleet.broker.nodes import UNREACHABLE, connect_first, node_name
from taskfleet.broker.topology import declare_topology
from taskfleet.core.constants import CONTROL_EXCHANGE, EVENTS_EXCHANGE
from taskfleet.core.errors import PublishFailed
from taskfleet.core.metrics import BROKER_CONNECTED
from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import Supervisor

log = structlog.get_logger("taskfleet.broker")
# The frames a connection queues for its writer, at most (aiormq's default is 10). Every
# publish, ack and live event waits for room there, and room is made one loop turn at a time:
# under load a worker's events queued behind the 10 and were dropped by the thousand (they
# and every ack now wait far less; docs/benchmarks.md). aiormq reads it from the class for
# each connection it makes, and offers no argument for it.
aiormq.Connection.FRAME_BUFFER_SIZE = 512
PERSISTENT = 2  # delivery_mode

OnConnect = Callable[[AbstractConnection], Awaitable[None]]


class Broker:
    """Owns the connection, a confirming publish channel and a fire-and-forget event channel."""

    def __init__(self, settings: Settings, supervisor: Supervisor, *, name: str = "taskfleet"):
        self.settings = settings
        self.supervisor = supervisor
        self.name = name
        self.on_connect: list[OnConnect] = []
        self.connection: AbstractConnection | None = None
        self._publish: AbstractChannel | None = None
        self.live = LivePublisher()  # events and control messages, best effort
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()
        self.connects = 0
        self._node = 0  # which of AMQP_URL's addresses it is (or was last) connected to

    @property
    def node(self) -> str:
        """host:port of the broker node it is (or was last) connected to."""
        urls = self.settings.amqp_urls
        return node_name(urls[self._node % len(urls)])

    @property
    def ready(self) -> bool:
        """Whether the connection is up, with its channels open and the topology declared."""
        return self._ready.is_set()

    async def start(self, *, wait_s: float | None = 30.0) -> None:
        """Start the connection loop; wait until connected (raise TimeoutError after wait_s)."""
        self.supervisor.spawn("amqp-connection", self._run)
        self.supervisor.spawn("event-publisher", self.live.run)
        if wait_s is not None:
            await asyncio.wait_for(self._ready.wait(), wait_s)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` seconds for the connection; False if it is still down by then."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def subscribe(self, hook: OnConnect) -> None:
        """Run `hook` on every (re)connect from now on, and at once if connected."""
        self.on_connect.append(hook)
        if self._ready.is_set() and self.connection is not None:
            await hook(self.connection)

    def unsubscribe(self, hook: OnConnect) -> None:
        """Stop running `hook` on reconnects; a hook not subscribed is ignored."""
        if hook in self.on_connect:
            self.on_connect.remove(hook)

    def reconnect(self, reason: str) -> None:
        """Drop the connection; the loop makes a fresh one (the consumer watchdog uses this)."""
        if self._ready.is_set():
            log.warning("amqp_reconnect_requested", reason=reason)
            self._lost.set()

    async def inspect(self, names: list[str]) -> dict[str, tuple[int, int]]:
        """(ready messages, consumers) of each queue. Raises ConnectionError while the broker is
        away; a connection that dies under the call is waited out once, on its successor."""
        for attempt in range(2):
            if not await self.wait_ready(self.settings.publish_timeout_s):
                raise ConnectionError("RabbitMQ is not connected")
            connection = self.connection
            assert connection is not None
            try:
                return await declare_passively(connection, names)
            except (RuntimeError, aiormq.exceptions.AMQPConnectionError) as exc:
                if attempt or not connection.is_closed:
                    raise ConnectionError(f"RabbitMQ connection lost: {exc!r}") from exc
                if self.connection is connection:  # its close callback wakes the loop
                    self._ready.clear()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the connection for good; stop the supervisor first, or its loop reconnects."""
        self._ready.clear()
        BROKER_CONNECTED.set(0)
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()

    async def _run(self) -> None:
        while True:
            # A fresh event per connection: callbacks of a closed one cannot trip the next.
            lost = self._lost = asyncio.Event()
            connection = await self._connect()
            try:
                await self._open(connection, lost)
                self._ready.set()
                BROKER_CONNECTED.set(1)
                self.connects += 1
                log.info("amqp_connected", connects=self.connects, node=self.node)
                await lost.wait()
            finally:
                self._ready.clear()
                BROKER_CONNECTED.set(0)
                self._publish = None
                self.live.attach(None)
                if not connection.is_closed:
                    await asyncio.shield(self._close_quietly(connection))
            log.warning("amqp_connection_lost", node=self.node)
            self._node += 1

    async def _connect(self) -> AbstractConnection:
        # After a loss, the next node first: the one just lost is likely the one that went away.
        urls = [self._with_heartbeat(url) for url in self.settings.amqp_urls]
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5),
            retry=retry_if_exception_type(UNREACHABLE),
            before_sleep=lambda s: log.warning(
                "amqp_connect_failed", error=repr(s.outcome.exception()) if s.outcome else None
            ),
        ):
            with attempt:
                self._node, conn = await connect_first(
                    urls, start=self._node, client_properties={"connection_name": self.name}
                )
                self.connection = conn
                return conn
        raise AssertionError("unreachable")

    def _with_heartbeat(self, url: str) -> URL:
        parsed = URL(url)
        if "heartbeat" in parsed.query:
            return parsed
        return parsed.update_query(heartbeat=self.settings.amqp_heartbeat_s)

    async def _open(self, connection: AbstractConnection, lost: asyncio.Event) -> None:
        connection.close_callbacks.add(lambda *_: lost.set())
        setup = await connection.channel()
        await declare_topology(setup, self.settings)
        await setup.close()
        self._publish = await self.channel(connection, publisher_confirms=True)
        events_channel = await self.channel(connection, publisher_confirms=False)
        self.live.attach(
            events_channel,
            await events_channel.get_exchange(self.settings.queue(EVENTS_EXCHANGE)),
            await events_channel.get_exchange(self.settings.queue(CONTROL_EXCHANGE)),
        )
        for hook in self.on_connect:
            await hook(connection)

    async def channel(
        self, connection: AbstractConnection, *, publisher_confirms: bool = True
    ) -> AbstractChannel:
        """A channel whose loss takes the connection down with it, so that all is restored."""
        channel = await connection.channel(
            publisher_confirms=publisher_confirms, on_return_raises=publisher_confirms
        )
        lost = self._lost
        channel.close_callbacks.add(lambda *_: lost.set())
        return channel

    @staticmethod
    async def _close_quietly(connection: AbstractConnection) -> None:
        try:
            await asyncio.wait_for(connection.close(), 5)
        except Exception as exc:  # already broken: nothing more to save
            log.debug("amqp_close_failed", error=repr(exc))

    # -- publishing ---------------------------------------------------------------------------

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """Publish a persistent message to a queue (default exchange) and wait for its confirm.

        Raises PublishFailed when the broker nacks, cannot route it, or is unreachable for
        longer than the timeout: the caller's outbox row then stays for the relay.
        """
        timeout = timeout_s or self.settings.publish_timeout_s
        properties = aiormq.spec.Basic.Properties(
            content_type="application/json",
            delivery_mode=PERSISTENT,
            message_id=message_id,
            headers=headers or None,
        )
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
                assert self._publish is not None
                channel = cast(aiormq.Channel, await self._publish.get_underlay_channel())
                # aiormq directly, and wait=False: with wait, each publish holds the channel's
                # lock until the connection's writer has sent it, so concurrent publishes go
                # out one per turn of the loop. The confirm awaited here says more anyway.
                await channel.basic_publish(
                    body,
                    exchange="",
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                    wait=False,
                )
        except TimeoutError:
            raise PublishFailed(f"publish to {routing_key}: no confirm within {timeout}s") from None
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise PublishFailed(f"publish to {routing_key}: {exc!r}") from exc

    async def publish_control(self, body: bytes) -> None:
        """Best effort, like an event: a cancel also sits in the database, which workers poll."""
        self.live.enqueue(self.live.control, "", body)

    async def publish_event(self, routing_key: str, body: bytes) -> None:
        """Best-effort live event (transient). The database is the truth; a lost event is fine.

        Returns at once: the event publisher sends it, in order, off the caller's path.
        """
        self.send_event(routing_key, body)

    def send_event(self, routing_key: str, body: bytes) -> None:
        """publish_event for code that cannot await (a timer callback)."""
        self.live.enqueue(self.live.events, routing_key, body)

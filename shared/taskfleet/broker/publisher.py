"""Creating tasks from any process: commit the task with its outbox row, then publish.

The API, the camera scheduler and the agent's child tasks all create tasks this way, so a
crash between commit and publish never loses one: the outbox relay publishes what is left.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from taskfleet.broker.connection import Broker
from taskfleet.core.constants import QUEUES, level_queue
from taskfleet.core.errors import PublishFailed
from taskfleet.core.messages import copy_headers
from taskfleet.core.metrics import PUBLISHER_DEFERRED, PUBLISHER_WAITING
from taskfleet.core.settings import Settings
from taskfleet.store.records import NewTask, Outgoing
from taskfleet.store.tasks import TaskStore

log = structlog.get_logger("taskfleet.submit")

# (queue, body, message_id, headers): tests inject a failing one.
Publish = Callable[[str, bytes, str, dict[str, Any]], Awaitable[None]]


class Parts(Protocol):
    """What publishing needs of a process: its settings, broker and store (a Kernel has them)."""

    @property
    def settings(self) -> Settings:
        """The process's settings: queue names (namespace) and the publish timeout."""
        ...

    @property
    def broker(self) -> Broker:
        """The process's broker, which publishes the messages."""
        ...

    @property
    def store(self) -> TaskStore:
        """The process's store, which forgets the outbox rows of published messages."""
        ...


def new_task(settings: Settings, **fields: object) -> NewTask:
    """A NewTask with the queue's (or the settings') max_attempts."""
    task_type = fields["type"]
    max_attempts = settings.max_attempts or QUEUES[task_type].max_attempts  # type: ignore[index]
    return NewTask(max_attempts=max_attempts, **fields)  # type: ignore[arg-type]


async def publish_after_commit(
    kernel: Parts, outgoing: Outgoing, publish: Publish | None = None
) -> bool:
    """Publish a committed task's message and drop its outbox row (that row, by its id).

    On failure the row stays and the relay publishes it after OUTBOX_GRACE_S; returns whether
    this call published it.
    """
    message = outgoing.message
    queue = kernel.settings.queue(level_queue(QUEUES[message.type].name, outgoing.priority))
    if not kernel.broker.ready:
        # Do not keep the client waiting on a broker that is away: the row is durable and
        # the relay publishes it once the broker is back.
        log.warning("publish_deferred_to_relay", task_id=str(message.task_id), error="no broker")
        return False
    headers = copy_headers(outgoing.trace)
    try:
        if publish is None:
            await kernel.broker.publish(
                queue, message.dumps(), message_id=str(message.task_id), headers=headers
            )
        else:
            await publish(queue, message.dumps(), str(message.task_id), headers)
    except PublishFailed as exc:
        log.warning("publish_deferred_to_relay", task_id=str(message.task_id), error=str(exc))
        return False
    await kernel.store.forget_outbox(outgoing.outbox_id)
    return True


class Publisher:
    """Publishes committed tasks' first messages off the caller's path, many at a time.

    The commit already holds the task and its outbox row, so a caller (an API request) may
    answer once its message is handed over here: if this process dies before the broker
    confirms, the relay publishes the row after OUTBOX_GRACE_S. One loop (owned by a
    supervisor) publishes everything pending at once and, while those confirms are on their
    way, gathers the next batch. Messages that arrive together reach the broker and then the
    workers together, which is what lets both batch their own work (taskfleet.store.coalesce).

    At most `backlog` messages wait here: beyond that a caller waits for room, which holds a
    fast client back instead of growing memory, and after PUBLISH_TIMEOUT_S leaves its
    message to the relay. Without the loop running, `send` publishes at once.
    """

    def __init__(self, kernel: Parts, publish: Publish | None = None, *, backlog: int = 64):
        self.kernel, self._publish = kernel, publish
        self._room = asyncio.Semaphore(backlog)
        self._pending: list[Outgoing] = []
        self._wake = asyncio.Event()
        self._running = False

    @property
    def running(self) -> bool:
        """Whether the loop runs: if not, `send` publishes on the caller's path instead."""
        return self._running

    async def send(self, outgoing: Outgoing) -> None:
        """Hand over a committed task's first message; returns before the broker confirms."""
        if not self._running:
            await publish_after_commit(self.kernel, outgoing, self._publish)
            return
        try:
            async with asyncio.timeout(self.kernel.settings.publish_timeout_s):
                await self._room.acquire()
        except TimeoutError:
            PUBLISHER_DEFERRED.inc()
            log.warning(
                "publish_deferred_to_relay",
                task_id=str(outgoing.message.task_id),
                error="publisher backlog full",
            )
            return
        self._pending.append(outgoing)
        PUBLISHER_WAITING.inc()
        self._wake.set()

    async def run(self) -> None:
        """The loop (run supervised): publish what is pending; when it stops, the rest at once."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._publish_pending()
        finally:
            self._running = False
            # Stopping: what was handed over goes out now rather than after the relay's grace.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._publish_pending())

    async def _publish_pending(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = await asyncio.gather(
                *(publish_after_commit(self.kernel, m, self._publish) for m in batch),
                return_exceptions=True,
            )
        finally:
            PUBLISHER_WAITING.dec(len(batch))
            for _ in batch:
                self._room.release()
        for outgoing, result in zip(batch, results, strict=True):
            if result is not True:  # the row stays: the relay publishes it
                PUBLISHER_DEFERRED.inc()
            if isinstance(result, BaseException):
                log.warning(
                    "publish_deferred_to_relay",
                    task_id=str(outgoing.message.task_id),
                    error=repr(result),
                )

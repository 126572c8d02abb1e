"""Priorities on the one message path: which delivery a free handler loop takes next.

A consumer subscribes to its queue at every level (`chat_tasks.high`, `chat_tasks`,
`chat_tasks.low`), each subscription with a prefetch of its own, and puts every delivery in
this inbox under its level. A free handler loop takes the oldest delivery of the highest level
that has one, except that a lower level with deliveries waiting is passed over at most
PASS_LIMIT times in a row: its next turn is then its own. So under a flood of high tasks a
waiting normal or low task still gets at least one slot in PASS_LIMIT + 1, and a high task
never waits for more than the slots that free up before it (docs/priorities.md).

The deliveries then go the same way whatever their level (taskfleet.path.consumer): only their
order differs, and a dead letter goes to the DLQ of the level it came from.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

from taskfleet.core.constants import LEVELS, Priority, level_queue
from taskfleet.core.settings import Settings
from taskfleet.path.incoming import Incoming

log = structlog.get_logger("taskfleet.runner")

# A waiting lower level is passed over at most this many times in a row.
PASS_LIMIT = 3

Delivery = tuple[Priority, Incoming]


class Inbox:
    """The deliveries given to a consumer and not started yet, one FIFO per level."""

    def __init__(self, pass_limit: int = PASS_LIMIT) -> None:
        self.pass_limit = pass_limit
        self._waiting: dict[Priority, deque[Incoming]] = {level: deque() for level in LEVELS}
        self._passed: dict[Priority, int] = dict.fromkeys(LEVELS, 0)
        self._arrived = asyncio.Event()

    def put(self, level: Priority, message: Incoming) -> None:
        """A delivery from `level`'s queue arrived."""
        self._waiting[level].append(message)
        self._arrived.set()

    def putter(self, level: Priority) -> Callable[[Incoming], Awaitable[None]]:
        """A callback that puts what it is given under `level`."""

        async def put(message: Incoming) -> None:
            self.put(level, message)

        return put

    def size(self) -> int:
        """The deliveries waiting, at every level."""
        return sum(len(waiting) for waiting in self._waiting.values())

    def drain(self) -> list[Incoming]:
        """Take every waiting delivery out (to hand them back)."""
        taken = [message for level in LEVELS for message in self._waiting[level]]
        for waiting in self._waiting.values():
            waiting.clear()
        return taken

    def empty(self) -> bool:
        """Whether no delivery waits at any level."""
        return not any(self._waiting.values())

    async def get(self) -> Delivery:
        """The next delivery to start, by the policy above; waits for one."""
        while self.empty():
            self._arrived.clear()
            await self._arrived.wait()
        return self.get_nowait()

    def get_nowait(self) -> Delivery:
        """The next delivery to start, by the policy above; IndexError when there is none."""
        level = self._next_level()
        return level, self._waiting[level].popleft()

    def _next_level(self) -> Priority:
        waiting = [level for level in LEVELS if self._waiting[level]]
        if not waiting:
            raise IndexError("no delivery waits")
        owed = [level for level in waiting[1:] if self._passed[level] >= self.pass_limit]
        # The most passed-over of those owed a turn (the higher on a tie), else the highest.
        level = max(owed, key=self._passed.__getitem__) if owed else waiting[0]
        for other in LEVELS:
            # A level is passed over only while it has deliveries waiting.
            passed = other in waiting and other is not level
            self._passed[other] = self._passed[other] + 1 if passed else 0
        return level


def level_queues(settings: Settings, queue: str) -> dict[Priority, str]:
    """A work queue's broker name at each level, highest first."""
    return {level: settings.queue(level_queue(queue, level)) for level in LEVELS}


async def subscribe(
    channel: AbstractChannel, queues: dict[Priority, str], inbox: Inbox
) -> dict[Priority, str]:
    """Consume every level's queue into `inbox`; the consumer tags, by level. Through aiormq
    itself: its deliveries go to the inbox as they come (taskfleet.path.incoming)."""
    underlay = await channel.get_underlay_channel()
    tags = {}
    for level, name in queues.items():
        ok = await underlay.basic_consume(name, _taker(inbox, level))
        if ok.consumer_tag is None:  # never from RabbitMQ: pamqp types it optional
            raise RuntimeError(f"no consumer tag for {name}")
        tags[level] = ok.consumer_tag
    return tags


def _taker(
    inbox: Inbox, level: Priority
) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
    async def take(message: DeliveredMessage) -> None:
        inbox.put(level, Incoming(message))

    return take


async def unsubscribe(
    channel: AbstractChannel | None, queues: dict[Priority, str], tags: dict[Priority, str]
) -> None:
    """Cancel the consumers `tags` names (best effort: the channel may be gone already)."""
    for level, tag in tags.items():
        if channel is None or channel.is_closed:
            return
        try:
            await (await channel.get_queue(queues[level], ensure=False)).cancel(tag)
        except Exception as exc:
            log.warning("consumer_cancel_failed", error=repr(exc))

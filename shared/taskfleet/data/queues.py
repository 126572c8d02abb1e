"""Queue depths and the dead-letter queues, for operators (API admin routes and the CLI).

RabbitMQ 3.10 here has no management plugin, so depths come from passive declares and
dead letters are read with basic.get on a channel of their own.
"""

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from taskfleet.core import tracing
from taskfleet.core.constants import (
    ERROR_HEADER,
    LEVELS,
    QUEUE_BY_NAME,
    QUEUES,
    REASON_HEADER,
    TaskType,
    dlq_name,
    level_queue,
)
from taskfleet.core.errors import InvalidPayload
from taskfleet.core.messages import copy_headers, parse_message
from taskfleet.core.metrics import QUEUE_MESSAGES
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.tenancy import Db, audited

log = structlog.get_logger("taskfleet.queues")

DEPTH_POLL_S = 10.0


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    messages: int
    consumers: int
    dead_letter: bool


class UnknownQueue(ValueError):
    """Not one of the four work queues (at any level)."""


def work_queue(name: str) -> str:
    """Accept `chat_tasks`, a level's `chat_tasks.high` or `chat_tasks.low`, each with or
    without `.dlq`; answer the work queue's name at that level (`chat_tasks.high`)."""
    queue = name.removesuffix(".dlq")
    if queue not in _LEVEL_OF:
        raise UnknownQueue(f"unknown queue {name!r}: one of {', '.join(QUEUE_BY_NAME)}")
    return queue


def levels_of(name: str) -> list[str]:
    """The level queues a name means: `chat_tasks` all three (its dead letters are those of
    every level), `chat_tasks.high` that one."""
    queue = work_queue(name)
    if queue in QUEUE_BY_NAME:
        return [level_queue(queue, level) for level in LEVELS]
    return [queue]


# Every level queue -> its work queue (`chat_tasks.high` -> `chat_tasks`).
_LEVEL_OF = {level_queue(q, level): q for q in QUEUE_BY_NAME for level in LEVELS}


async def _channel(kernel: Kernel) -> AbstractChannel:
    # A channel of its own: a failed passive declare closes it, and it must not take the
    # broker's shared channels (whose loss reconnects everything) down with it.
    if not await kernel.broker.wait_ready(kernel.settings.publish_timeout_s):
        raise ConnectionError("RabbitMQ is not connected")
    assert kernel.broker.connection is not None
    return await kernel.broker.connection.channel()


async def depths(kernel: Kernel) -> list[QueueDepth]:
    """Every work queue and dead-letter queue at every level, with ready messages and
    consumers (`chat_tasks.high`, `chat_tasks.high.dlq`, `chat_tasks`, ...)."""
    names = [(n, n.endswith(".dlq")) for q in _LEVEL_OF for n in (q, dlq_name(q))]
    counts = await kernel.broker.inspect([kernel.settings.queue(n) for n, _ in names])
    found = [QueueDepth(n, *counts[kernel.settings.queue(n)], dead) for n, dead in names]
    for depth in found:
        QUEUE_MESSAGES.labels(depth.name).set(depth.messages)
    return found


async def finished_last_minute(kernel: Kernel) -> dict[str, int]:
    """Work queue -> tasks of its type that ended in the last minute (the tasks_finished
    index on completed_at keeps this a short range scan)."""
    rows = await kernel.pool.fetch(
        "SELECT type, count(*) AS n FROM tasks"
        " WHERE completed_at > now() - interval '1 minute' GROUP BY type"
    )
    found = {QUEUES[TaskType(r["type"])].name: int(r["n"]) for r in rows}
    return {spec.name: found.get(spec.name, 0) for spec in QUEUES.values()}


async def poll_depths(kernel: Kernel) -> None:
    """Keep `taskfleet_queue_messages` current (a supervised loop in the API)."""
    while True:
        try:
            await depths(kernel)
        except (ConnectionError, OSError) as exc:
            log.warning("queue_depth_poll_failed", error=repr(exc))
        await asyncio.sleep(DEPTH_POLL_S)


def describe(message: AbstractIncomingMessage) -> dict[str, Any]:
    """A dead letter as operators see it: its task id, why it was dead-lettered, its body.

    A body that is not JSON is shown as text, its first 1,000 bytes.
    """
    headers = message.headers or {}
    try:
        body: Any = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        body = message.body[:1000].decode(errors="replace")
    task_id = body.get("task_id") if isinstance(body, dict) else None
    try:
        tid = str(UUID(str(task_id))) if task_id else None
    except ValueError:
        tid = None
    return {
        "message_id": message.message_id, "task_id": tid,
        "reason": _text(headers.get(REASON_HEADER)), "error": _text(headers.get(ERROR_HEADER)),
        "body": body,
    }  # fmt: skip


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def peek_dead_letters(kernel: Kernel, queue: str, limit: int = 100) -> list[dict[str, Any]]:
    """Up to `limit` dead letters of a queue (of each of its levels, highest first), left in
    place (taken unacked, then returned).

    A quorum queue takes them back a few milliseconds after the channel closed: a depth read
    right after a peek may count them as held by a consumer, not as messages."""
    channel = await _channel(kernel)
    seen: list[dict[str, Any]] = []
    try:
        for name in levels_of(queue):
            dlq = await channel.get_queue(kernel.settings.queue(dlq_name(name)), ensure=False)
            while len(seen) < limit and (m := await dlq.get(no_ack=False, fail=False)):
                seen.append(describe(m))
    finally:
        await channel.close()  # every unacked message goes back to the queue
    return seen


async def purge_dead_letters(kernel: Kernel, queue: str) -> int:
    """Delete every dead letter of a queue (`chat_tasks`: of every level); how many."""
    channel = await _channel(kernel)
    purged = 0
    try:
        for name in levels_of(queue):
            dlq = await channel.get_queue(kernel.settings.queue(dlq_name(name)), ensure=False)
            purged += int((await dlq.purge()).message_count or 0)
    finally:
        await channel.close()
    return purged


async def replay_dead_letters(
    kernel: Kernel, queue: str, *, actor: str, limit: int = 1000
) -> tuple[int, int]:
    """Put dead letters back to work. Each letter, by what became of its task:

    - failed or cancelled: run again with a fresh budget of attempts;
    - queued or retrying (the broker dead-lettered its message by the delivery limit, say,
      while the database was away): its next message is published now;
    - never created (a chat message a backend published straight to the queue that no
      worker could claim): the letter goes back to its queue as it was, to create its task;
    - anything else (completed, running, not ours, not our schema) stays in the queue.

    Every level's DLQ for `chat_tasks`, one level's for `chat_tasks.high`; a task runs again
    at its own priority. Returns (replayed, skipped). Audited as `actor`'s."""
    db = audited(kernel.pool, actor, "dlq_replay", queue=work_queue(queue))
    channel = await _channel(kernel)
    replayed = skipped = 0
    try:
        for name in levels_of(queue):
            dlq = await channel.get_queue(kernel.settings.queue(dlq_name(name)), ensure=False)
            while replayed + skipped < limit and (m := await dlq.get(no_ack=False, fail=False)):
                if await _replay_one(kernel, db, name, m):
                    await m.ack()  # only once its task's next message is durable
                    replayed += 1
                else:
                    skipped += 1
    finally:
        await channel.close()
    log.info("dead_letters_replayed", queue=queue, replayed=replayed, skipped=skipped)
    return replayed, skipped


async def _replay_one(kernel: Kernel, db: Db, queue: str, message: AbstractIncomingMessage) -> bool:
    """Replay one letter of `queue`'s DLQ (a level queue: `chat_tasks.high`)."""
    from taskfleet.data.operations import republish, rerun

    try:
        msg = parse_message(message.body)
    except InvalidPayload:
        return False
    if QUEUES[msg.type].name != _LEVEL_OF[queue]:
        return False  # it never belonged here: a worker would dead-letter it again
    task = await kernel.store.get_task(msg.task_id)
    if task is None:
        if msg.type != TaskType.CHAT:
            return False  # only a chat message creates its task from a message
        await kernel.broker.publish(
            kernel.settings.queue(queue),
            message.body,
            message_id=str(msg.task_id),
            headers=copy_headers(tracing.carried(message.headers)),  # still in its trace
        )
        return True
    if task["user_id"] != msg.user_id:
        return False
    if task["status"] in ("failed", "cancelled"):
        return bool(await rerun(kernel, db, msg.task_id, msg.type) == "queued")
    if task["status"] in ("queued", "retrying"):
        return await republish(kernel, db, msg.task_id)
    return False

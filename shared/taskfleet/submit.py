"""Creating tasks from any process: commit the task with its outbox row, then publish.

The API, the camera scheduler and the agent's child tasks all create tasks this way, so a
crash between commit and publish never loses one: the outbox relay publishes what is left.
"""

from collections.abc import Awaitable, Callable

import structlog

from taskfleet.constants import QUEUES
from taskfleet.errors import PublishFailed
from taskfleet.kernel import Kernel
from taskfleet.messages import TaskMessage
from taskfleet.settings import Settings
from taskfleet.store import NewTask

log = structlog.get_logger("taskfleet.submit")

Publish = Callable[[str, bytes, str], Awaitable[None]]


def new_task(settings: Settings, **fields: object) -> NewTask:
    """A NewTask with the queue's (or the settings') max_attempts."""
    task_type = fields["type"]
    max_attempts = settings.max_attempts or QUEUES[task_type].max_attempts  # type: ignore[index]
    return NewTask(max_attempts=max_attempts, **fields)  # type: ignore[arg-type]


async def publish_after_commit(
    kernel: Kernel, message: TaskMessage, publish: Publish | None = None
) -> bool:
    """Publish a committed task's first message and drop its outbox row.

    On failure the row stays and the relay publishes it after OUTBOX_GRACE_S; returns whether
    this call published it.
    """
    queue = kernel.settings.queue(QUEUES[message.type].name)
    if not kernel.broker.ready:
        # Do not keep the client waiting on a broker that is away: the row is durable and
        # the relay publishes it once the broker is back.
        log.warning("publish_deferred_to_relay", task_id=str(message.task_id), error="no broker")
        return False
    try:
        if publish is None:
            await kernel.broker.publish(queue, message.dumps(), message_id=str(message.task_id))
        else:
            await publish(queue, message.dumps(), str(message.task_id))
    except PublishFailed as exc:
        log.warning("publish_deferred_to_relay", task_id=str(message.task_id), error=str(exc))
        return False
    await kernel.store.forget_outbox(message.task_id)
    return True

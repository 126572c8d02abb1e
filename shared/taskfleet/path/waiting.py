"""The `waiting` outcome: a task hands work to child tasks and frees its worker (DESIGN.md §4).

A handler returns `Waiting(children, state)` instead of a TaskResult. The runner then, in one
transaction (store/sql/tf_wait_for.sql), moves the task processing -> waiting with `state` as
its checkpoint and inserts the children with their outbox rows; after the commit it publishes
the children and acknowledges the task's message. When the last child ends, the transaction
that ends it re-queues the parent (a trigger), and the parent runs again with `state` as
`ctx.last_checkpoint`.
"""

import asyncio
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from taskfleet.broker.publisher import Parts, publish_after_commit
from taskfleet.core.constants import Priority, TaskType
from taskfleet.security.fields import Sealer
from taskfleet.store.records import NewTask


@dataclass(frozen=True, slots=True)
class Waiting:
    """Run `children` elsewhere, then resume this task with `state` as its checkpoint."""

    children: list[NewTask]
    state: Any

    def __post_init__(self) -> None:
        # A parent with no child would never be re-queued: refuse it here, not in production.
        if not self.children:
            raise ValueError("Waiting needs at least one child task")

    def sealed(self, sealer: Sealer, task_type: TaskType, task_id: UUID) -> "Waiting":
        """As it is written: the state and the children's inputs with their fields sealed."""
        children = [
            replace(c, input=sealer.seal_input(c.type, c.task_id, c.input)) for c in self.children
        ]
        return Waiting(children, sealer.seal_checkpoint(task_type, task_id, self.state))

    def rows(self) -> list[dict[str, Any]]:
        """The children as tf_wait_for takes them (user and chat come from the parent's row),
        each with its `traceparent` when it has one (tracing on)."""
        return [
            {
                "id": str(c.task_id),
                "type": c.type.value,
                "input": c.input,
                "max_attempts": c.max_attempts,
                **({"traceparent": c.traceparent} if c.traceparent else {}),
            }
            for c in self.children
        ]


async def publish_children(kernel: Parts, waiting: Waiting, outbox_ids: list[int]) -> None:
    """After the commit: publish each child's first message (the relay covers a failure).

    `outbox_ids`: the children's outbox rows, in their order (tf_wait_for's answer). They run
    at their parent's priority, which tf_wait_for wrote on their rows: their queue's level."""
    level = await kernel.store.pool.fetchval(
        "SELECT priority FROM tasks WHERE id = $1", waiting.children[0].task_id
    )
    children = [replace(c, priority=Priority(level or Priority.NORMAL)) for c in waiting.children]
    sends = [c.outgoing(i) for c, i in zip(children, outbox_ids, strict=True)]
    await asyncio.gather(*(publish_after_commit(kernel, outgoing) for outgoing in sends))

"""Live events on the `taskfleet.events` topic exchange (DESIGN.md §5, §7).

Every event of a task carries `seq`, a per-task number that only grows: the task row's
`event_seq` (bumped by every state change) times SEQ_SCALE, plus the index of a reply delta
since that state change. A client orders events by it and resumes with `?since=<task>:<seq>`.
Events are transient and best-effort: the database, not an event, is the truth.
"""

from typing import Any
from uuid import UUID

SEQ_SCALE = 1_000_000

# Routing keys: task.<type>.<status> for state, task.<type>.delta for streamed reply text.
TASK_EVENTS_BINDING = "task.#"


def event_seq(row_seq: int, delta_index: int = 0) -> int:
    """The `seq` of an event: a state change's row seq scaled up, plus the reply delta's index."""
    return row_seq * SEQ_SCALE + delta_index


def task_updated(
    *,
    task_id: UUID | str,
    task_type: str,
    user_id: str,
    chat_id: str | None,
    status: str,
    seq: int,
    **fields: Any,
) -> tuple[str, dict[str, Any]]:
    """(routing key, body) of a `task.updated` event; `fields` are the task fields that changed."""
    tid = str(task_id)
    task = {"id": tid, "type": task_type, "user_id": user_id, "chat_id": chat_id,
            "status": status, "seq": seq, **fields}  # fmt: skip
    body = {"type": "task.updated", "user_id": user_id, "task_id": tid, "seq": seq,
            "task": task}  # fmt: skip
    return f"task.{task_type}.{status}", body


def message_delta(
    *,
    task_id: UUID | str,
    task_type: str,
    user_id: str,
    message_id: UUID | str | None,
    seq: int,
    offset: int,
    delta: str,
) -> tuple[str, dict[str, Any]]:
    """(routing key, body) of a `message.delta`: `delta` is the reply text from `offset` on."""
    body = {"type": "message.delta", "user_id": user_id, "task_id": str(task_id),
            "message_id": str(message_id) if message_id else None, "seq": seq,
            "offset": offset, "delta": delta}  # fmt: skip
    return f"task.{task_type}.delta", body

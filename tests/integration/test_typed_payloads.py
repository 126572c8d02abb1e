"""The runner validates each task's input against its type's model before the handler runs
(taskfleet.core.payloads): a bad one fails the task as invalid_payload, dead-lettered with its
reason, and the handler never sees it; a good one reaches the handler as its typed model."""

from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel

from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.payloads import CameraPayload, ChatPayload, DocumentPayload, ToolPayload
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import NewTask
from tests.conftest import wait_for
from tests.integration.conftest import (
    ConsumerFactory,
    chat_message,
    drain_dlq,
    publish,
    wait_status,
)

BAD = [
    (TaskType.CHAT, {"content": "  "}, "payload.content must be non-empty text"),
    (TaskType.TOOL, {"name": "calculator", "arguments": {}}, "payload.call_id is required"),
    (TaskType.DOCUMENT, {"document_id": "nope"}, "payload.document_id is not a uuid: 'nope'"),
    (TaskType.CAMERA, {"frame_id": 5}, "payload.frame_id must be a frame id (uuid)"),
]
GOOD = [
    (TaskType.CHAT, {"content": "hi"}, ChatPayload),
    (TaskType.TOOL, {"call_id": "c1", "name": "calculator", "arguments": {"x": 1}}, ToolPayload),
    (TaskType.DOCUMENT, {"document_id": str(uuid4())}, DocumentPayload),
    (TaskType.CAMERA, {"frame_id": str(uuid4()), "camera_id": "gate"}, CameraPayload),
]


async def submit(kernel: Kernel, task_type: TaskType, payload: dict[str, Any]) -> Any:
    """A chat task is made from its message; the others have their row (and outbox row)."""
    if task_type is TaskType.CHAT:
        msg = chat_message(user_id=f"typed-{uuid4().hex[:8]}").model_copy(
            update={"payload": payload}
        )
        await publish(kernel, msg)
        return msg.task_id
    new = NewTask(type=task_type, user_id=f"typed-{uuid4().hex[:8]}", input=payload, max_attempts=3)
    async with kernel.pool.acquire() as conn:
        await kernel.store.insert_task(conn, new, relay_grace_s=0)
    return new.task_id


@pytest.mark.parametrize(("task_type", "payload", "reason"), BAD, ids=[t for t, _, _ in BAD])
async def test_a_bad_payload_is_dead_lettered_with_its_reason_and_never_handled(
    kernel: Kernel, consume: ConsumerFactory, task_type: TaskType, payload: Any, reason: str
) -> None:
    spec, ran = QUEUES[task_type], []

    async def handler(ctx: TaskContext) -> TaskResult:
        ran.append(ctx.task_id)
        return TaskResult({})

    await drain_dlq(kernel, spec.name)
    await consume(handler, spec=spec)
    task_id = await submit(kernel, task_type, payload)
    task = await wait_status(kernel, task_id, "failed")
    assert task["attempts"] == 1  # permanent: not tried again
    assert task["error"] == {"code": "invalid_payload", "message": reason, "retryable": False}
    [letter] = await wait_for(lambda: _some(drain_dlq(kernel, spec.name)), what="the dead letter")
    assert letter.headers["x-taskfleet-error"] == "invalid_payload"
    assert letter.headers["x-taskfleet-reason"] == "permanent: invalid_payload"
    assert task_id not in ran


@pytest.mark.parametrize(("task_type", "payload", "model"), GOOD, ids=[t for t, _, _ in GOOD])
async def test_a_handler_gets_its_payload_as_its_types_model(
    kernel: Kernel,
    consume: ConsumerFactory,
    task_type: TaskType,
    payload: Any,
    model: type[BaseModel],
) -> None:
    seen: dict[Any, Any] = {}

    async def handler(ctx: TaskContext) -> TaskResult:
        seen[ctx.task_id] = ctx.payload
        return TaskResult({})

    await consume(handler, spec=QUEUES[task_type])
    task_id = await submit(kernel, task_type, payload)
    await wait_status(kernel, task_id, "completed")
    assert isinstance(seen[task_id], model)
    assert seen[task_id] == model.model_validate(payload)


async def _some(letters: Any) -> Any:
    return (await letters) or None

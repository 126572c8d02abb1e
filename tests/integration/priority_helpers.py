"""What the priority tests share: a chat submission through the API, the ready messages of
each level, a handler that records the order it ran tasks in."""

from typing import Any
from uuid import UUID

from taskfleet.core.constants import Priority, level_queue
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.conftest import wait_for
from tests.integration.conftest import CHAT

Client = Any


async def chat(client: Client, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    resp = await client.post(
        "/api/chat/stream", json={"chat_id": "p", "content": "hi", **fields}, headers=headers
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == 202, body
    return body


async def ready(kernel: Kernel, level: Priority) -> int:
    name = kernel.settings.queue(level_queue(CHAT.name, level))
    return int((await kernel.broker.inspect([name]))[name][0])


async def ready_to_be(kernel: Kernel, counts: dict[Priority, int]) -> None:
    """At least these many ready at each level (none where 0 is asked): the session's
    reconciler may republish another test's leftover task meanwhile."""

    async def probe() -> bool:
        found = {level: await ready(kernel, level) for level in counts}
        return all(found[level] >= n if n else found[level] == 0 for level, n in counts.items())

    await wait_for(probe, timeout_s=10, what=f"ready messages {counts}")


def recorder(ran: list[UUID]) -> Any:
    async def record(ctx: TaskContext) -> TaskResult:
        ran.append(ctx.task_id)
        return TaskResult({"reply": "ok"}, reply="ok")

    return record


async def message_ids(kernel: Kernel, name: str) -> list[str | None]:
    """The ids of the messages in a queue now, left there (taken unacked, then returned)."""
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    found: list[str | None] = []
    try:
        queue = await channel.get_queue(name, ensure=False)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            found.append(message.message_id)
    finally:
        await channel.close()
    return found


async def drain(kernel: Kernel, name: str) -> None:
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    try:
        await (await channel.get_queue(name, ensure=False)).purge()
    finally:
        await channel.close()


async def one_ready(kernel: Kernel, name: str) -> bool:
    return bool((await kernel.broker.inspect([name]))[name][0] == 1)

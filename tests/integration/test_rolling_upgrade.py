"""A rolling upgrade: workers of the previous version still claim and wait."""

from uuid import uuid4

from taskfleet.runtime.kernel import Kernel
from tests.integration.conftest import (
    chat_message,
)


async def test_workers_of_the_previous_version_still_claim_and_wait(kernel: Kernel) -> None:
    """A rolling upgrade: the statements of the previous version's workers still work."""
    msg = chat_message()
    row = await kernel.pool.fetchrow(
        "SELECT * FROM tf_claim($1, 'chat_message', $2, $3, $4, 1, false, 'chat_tasks', 3, 0, 1)",
        msg.task_id,
        msg.user_id,
        msg.chat_id,
        msg.payload,
    )
    assert (row["verdict"], row["attempts"]) == ("claimed", 1)
    child = {"id": str(uuid4()), "type": "tool_execution", "input": {}, "max_attempts": 1}
    seq = await kernel.pool.fetchval(
        "SELECT tf_wait($1, $2, '{}', $3, 60)", msg.task_id, row["fence"], [child]
    )
    assert seq == row["event_seq"] + 1

"""The fencing token: a stale holder can never overwrite a newer attempt (DESIGN.md §6)."""

import pytest

from taskfleet.core.errors import StaleClaim
from taskfleet.runtime.kernel import Kernel
from taskfleet.store.records import ClaimPolicy
from tests.integration.conftest import CHAT, chat_message

POLICY = ClaimPolicy(max_attempts=5, user_limit=0, throttle_s=0.1)


class TestFencing:
    async def test_stale_holders_write_after_takeover_is_rejected(self, kernel: Kernel) -> None:
        store = kernel.store
        msg = chat_message()
        # Given worker A claimed the task
        first = await store.claim(msg, redelivered=False, queue=CHAT.name, policy=POLICY)
        assert first.verdict == "claimed"
        # And the broker redelivered the message to worker B (A lost its channel)
        second = await store.claim(msg, redelivered=True, queue=CHAT.name, policy=POLICY)
        assert second.verdict == "claimed"
        assert second.fence > first.fence
        assert second.attempts == 2
        # When A, cut off but alive, tries to complete, fail, checkpoint or report progress
        with pytest.raises(StaleClaim):
            await store.complete(msg.task_id, first.fence, {"by": "A"}, reply="from A")
        with pytest.raises(StaleClaim):
            await store.fail(msg.task_id, first.fence, {"code": "x"}, CHAT.name, "r")
        with pytest.raises(StaleClaim):
            await store.checkpoint(msg.task_id, first.fence, {"page": 9})
        with pytest.raises(StaleClaim):
            await store.progress(msg.task_id, first.fence, 0.9, "A", None)
        # Then nothing of A's is in the row, and B completes normally
        task = await store.get_task(msg.task_id)
        assert task is not None
        assert (task["status"], task["checkpoint"], task["output"]) == ("processing", None, None)
        await store.complete(msg.task_id, second.fence, {"by": "B"}, reply="from B")
        task = await store.get_task(msg.task_id)
        assert task is not None
        assert (task["status"], task["output"]) == ("completed", {"by": "B"})
        replies = [
            m["content"]
            for m in await store.chat_messages(kernel.pool, "chat-1", "alice")
            if m["task_id"] == msg.task_id and m["role"] == "assistant"
        ]
        assert replies == ["from B"]

    async def test_a_fresh_copy_of_a_running_task_is_a_duplicate_not_a_takeover(
        self, kernel: Kernel
    ) -> None:
        msg = chat_message()
        first = await kernel.store.claim(msg, redelivered=False, queue=CHAT.name, policy=POLICY)
        copy = await kernel.store.claim(msg, redelivered=False, queue=CHAT.name, policy=POLICY)
        assert (first.verdict, copy.verdict) == ("claimed", "duplicate")
        await kernel.store.complete(msg.task_id, first.fence, {}, None)

    async def test_redelivery_past_max_attempts_fails_the_task_instead_of_running_it(
        self, kernel: Kernel
    ) -> None:
        policy = ClaimPolicy(max_attempts=2, user_limit=0, throttle_s=0.1)
        msg = chat_message()
        verdicts = [
            (
                await kernel.store.claim(msg, redelivered=i > 0, queue=CHAT.name, policy=policy)
            ).verdict
            for i in range(3)
        ]
        assert verdicts == ["claimed", "claimed", "exhausted"]
        task = await kernel.store.get_task(msg.task_id)
        assert task is not None
        assert task["status"] == "failed"
        assert task["error"]["code"] == "worker_lost"
        dead = await kernel.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE task_id = $1 AND kind = 'dead_letter'", msg.task_id
        )
        assert dead == 1

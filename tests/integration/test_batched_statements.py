"""Claims, completions and chat submissions that come at once are one statement
(taskfleet.store.coalesce), with the same answers, call by call, as one statement each."""

import asyncio
from uuid import UUID, uuid4

import asyncpg
from prometheus_client import REGISTRY

from taskfleet.core.constants import TaskType
from taskfleet.core.errors import StaleClaim
from taskfleet.core.messages import TaskMessage
from taskfleet.runtime.kernel import Kernel
from taskfleet.store import quotas
from taskfleet.store.records import ChatSubmission, Claim, ClaimPolicy, NewTask, OverQuota
from taskfleet.store.tenancy import for_user
from tests.integration.agent_helpers import waiting_parent
from tests.integration.api_client import new_user
from tests.integration.conftest import CHAT, chat_message

POLICY = ClaimPolicy(max_attempts=3, user_limit=0, throttle_s=0.1)


def batches(statement: str) -> tuple[float, float]:
    """(statements sent as batches, calls in them) so far."""
    labels = {"statement": statement}
    count = REGISTRY.get_sample_value("taskfleet_statement_batch_size_count", labels) or 0.0
    total = REGISTRY.get_sample_value("taskfleet_statement_batch_size_sum", labels) or 0.0
    return count, total


async def claim(kernel: Kernel, msg: TaskMessage) -> Claim:
    return await kernel.store.claim(msg, redelivered=False, queue=CHAT.name, policy=POLICY)


async def test_claims_at_once_are_one_statement_with_each_its_own_verdict(
    kernel: Kernel,
) -> None:
    alice, bob = new_user(), new_user()
    bobs = chat_message(bob)
    assert (await claim(kernel, bobs)).verdict == "claimed"
    fresh = chat_message(alice)
    forged = chat_message(alice, task_id=bobs.task_id)  # names bob's task
    before = batches("claim")

    first, again, mismatch = await asyncio.gather(
        claim(kernel, fresh), claim(kernel, fresh), claim(kernel, forged)
    )

    assert (first.verdict, again.verdict, mismatch.verdict) == ("claimed", "duplicate", "mismatch")
    assert first.user_id == alice
    assert mismatch.user_id == bob
    count, total = batches("claim")
    assert (count - before[0], total - before[1]) == (1, 3)


async def test_a_batch_with_a_bad_payload_is_retried_call_by_call(kernel: Kernel) -> None:
    good = [chat_message(new_user()) for _ in range(3)]
    bad = chat_message(new_user(), content="nul \x00 inside")  # jsonb cannot hold U+0000
    answers = await asyncio.gather(
        *(claim(kernel, m) for m in [*good, bad]), return_exceptions=True
    )
    assert [a.verdict for a in answers[:3] if isinstance(a, Claim)] == ["claimed"] * 3
    assert isinstance(answers[3], asyncpg.DataError)
    assert await kernel.pool.fetchval("SELECT count(*) FROM tasks WHERE id = $1", bad.task_id) == 0


async def test_completions_at_once_are_one_statement_and_a_stale_fence_is_only_its_own(
    kernel: Kernel,
) -> None:
    msgs = [chat_message(new_user(), chat_id=f"c-{uuid4().hex[:6]}") for _ in range(4)]
    claims = [await claim(kernel, m) for m in msgs]
    fences = [c.fence for c in claims]
    fences[2] -= 1  # an attempt that lost its claim
    before = batches("complete")

    answers = await asyncio.gather(
        *(
            kernel.store.complete(m.task_id, f, {"i": i}, reply=f"r{i}")
            for i, (m, f) in enumerate(zip(msgs, fences, strict=True))
        ),
        return_exceptions=True,
    )

    assert isinstance(answers[2], StaleClaim)
    assert all(isinstance(a, int) for i, a in enumerate(answers) if i != 2)
    rows = await kernel.pool.fetch(
        "SELECT t.id, t.status, t.output, m.content FROM tasks t JOIN messages m"
        " ON m.task_id = t.id AND m.role = 'assistant' WHERE t.id = ANY($1::uuid[])",
        [m.task_id for m in msgs],
    )
    by_id = {r["id"]: r for r in rows}
    for i, m in enumerate(msgs):
        row = by_id[m.task_id]
        if i == 2:
            assert (row["status"], row["output"], row["content"]) == ("processing", None, "")
        else:
            assert (row["status"], row["output"], row["content"]) == (
                "completed",
                {"i": i},
                f"r{i}",
            )
    count, total = batches("complete")
    assert (count - before[0], total - before[1]) == (1, 4)


async def test_the_last_children_completed_in_one_batch_requeue_their_parent_once(
    kernel: Kernel,
) -> None:
    """tf_complete_many updates the batch in one statement, so both children's triggers fire
    after it and each sees both ended: the parent must still be re-queued only once."""
    user = new_user()
    parent = chat_message(user_id=user)
    kids = await waiting_parent(kernel, user, parent.task_id, 2)
    await kernel.pool.execute(  # as their claims would leave them
        "UPDATE tasks SET status = 'processing', attempts = 1, fence = 1 WHERE id = ANY($1)",
        [k.task_id for k in kids],
    )
    before = batches("complete")

    await asyncio.gather(*(kernel.store.complete(k.task_id, 1, {"ok": True}) for k in kids))

    assert batches("complete") == (before[0] + 1, before[1] + 2)
    statuses = await kernel.pool.fetch(
        "SELECT id, status FROM tasks WHERE id = ANY($1)",
        [parent.task_id, *[k.task_id for k in kids]],
    )
    assert {r["id"]: r["status"] for r in statuses} == {
        parent.task_id: "queued",
        kids[0].task_id: "completed",
        kids[1].task_id: "completed",
    }
    rows = await kernel.pool.fetch(
        "SELECT queue, attempt, kind FROM outbox WHERE task_id = $1", parent.task_id
    )
    assert [tuple(r) for r in rows] == [("chat_tasks", 2, "task")]


async def test_a_refused_batch_of_two_policies_commits_nothing_before_its_retry(
    kernel: Kernel,
) -> None:
    """Two groups are two statements in one transaction: had the first committed before the
    second was refused, its retry would find its tasks taken and call them duplicates."""
    good = chat_message(new_user())
    bad = chat_message(new_user(), content="nul \x00 inside")
    other = ClaimPolicy(max_attempts=4, user_limit=0, throttle_s=0.1)
    answers = await asyncio.gather(
        claim(kernel, good),
        kernel.store.claim(bad, redelivered=False, queue=CHAT.name, policy=other),
        return_exceptions=True,
    )
    assert isinstance(answers[0], Claim)
    assert answers[0].verdict == "claimed"
    assert isinstance(answers[1], asyncpg.DataError)


async def submit(
    kernel: Kernel, user: str, *, limits: quotas.Limits, parent_id: UUID | None = None
) -> ChatSubmission:
    new = NewTask(
        type=TaskType.CHAT,
        user_id=user,
        chat_id="c",
        input={"content": "hi"},
        max_attempts=3,
        parent_id=parent_id,
    )
    return await kernel.store.submit_chat(
        for_user(kernel.pool, user), new, content="hi", relay_grace_s=60, limits=limits
    )


async def test_submissions_of_several_users_are_one_statement_each_under_its_own_user(
    kernel: Kernel,
) -> None:
    alice, bob = new_user(), new_user()
    one_a_minute = quotas.Limits(per_minute=1, max_waiting=100)
    before = batches("submit")

    answers = await asyncio.gather(
        submit(kernel, alice, limits=one_a_minute),
        submit(kernel, bob, limits=one_a_minute),
        submit(kernel, alice, limits=one_a_minute),
        return_exceptions=True,
    )

    first, bobs, second = answers
    assert isinstance(first, ChatSubmission)
    assert isinstance(bobs, ChatSubmission)
    assert isinstance(second, OverQuota)  # alice's second; bob's count is his own
    count, total = batches("submit")
    assert (count - before[0], total - before[1]) == (1, 3)
    rows = await kernel.pool.fetch(
        "SELECT t.id, t.user_id, array_agg(m.user_id) AS message_users FROM tasks t"
        " JOIN messages m ON m.task_id = t.id WHERE t.id = ANY($1::uuid[]) GROUP BY t.id",
        [first.task_id, bobs.task_id],
    )
    owners = {r["id"]: (r["user_id"], sorted(r["message_users"])) for r in rows}
    assert owners == {first.task_id: (alice, [alice, alice]), bobs.task_id: (bob, [bob, bob])}


async def test_a_refused_submission_batch_is_retried_call_by_call(kernel: Kernel) -> None:
    limits = quotas.Limits(per_minute=100, max_waiting=100)
    users = [new_user() for _ in range(3)]
    answers = await asyncio.gather(
        *(submit(kernel, u, limits=limits) for u in users[:2]),
        submit(kernel, users[2], limits=limits, parent_id=uuid4()),  # names no task
        return_exceptions=True,
    )
    assert [type(a) for a in answers[:2]] == [ChatSubmission, ChatSubmission]
    assert isinstance(answers[2], asyncpg.ForeignKeyViolationError)
    stored = await kernel.pool.fetchval(
        "SELECT count(*) FROM tasks WHERE user_id = ANY($1::text[])", users
    )
    assert stored == 2

"""A task keeps the trace context of the span that made it (migrations/0029) by every way a
request submits one: the coalesced chat submission (each call its own, still one statement),
a task inserted with its outbox row, a batch's members and its `then` task; NULL when there is
none (tracing off). The outbox relay reads it with the row it publishes."""

import asyncio
from typing import Any
from uuid import UUID

import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import REGISTRY

from taskfleet.broker.outbox import OutboxRelay, message_headers
from taskfleet.core import tracing
from taskfleet.core.constants import TaskType
from taskfleet.core.settings import Settings
from taskfleet.data.batches import Member, submit_batch
from taskfleet.runtime.kernel import Kernel, open_kernel
from taskfleet.store import quotas
from taskfleet.store.records import NewTask
from taskfleet.store.tenancy import for_user
from tests.integration.api_client import new_user

LIMITS = quotas.Limits(per_minute=100, max_waiting=100)


def traceparent(n: int) -> str:
    return f"00-{n:032x}-{n:016x}-01"


def chat(user: str, kept: str | None) -> NewTask:
    return NewTask(type=TaskType.CHAT, user_id=user, chat_id="c", input={"content": "hi"},
                   max_attempts=3, traceparent=kept)  # fmt: skip


async def kept(kernel: Kernel, ids: list[UUID]) -> dict[UUID, str | None]:
    rows = await kernel.pool.fetch(
        "SELECT id, traceparent FROM tasks WHERE id = ANY($1::uuid[])", ids
    )
    return {r["id"]: r["traceparent"] for r in rows}


def submit_statements() -> tuple[float, float]:
    """(coalesced submission statements so far, calls in them)."""
    labels = {"statement": "submit"}
    return (
        REGISTRY.get_sample_value("taskfleet_statement_batch_size_count", labels) or 0.0,
        REGISTRY.get_sample_value("taskfleet_statement_batch_size_sum", labels) or 0.0,
    )


async def test_chat_submissions_at_once_keep_each_its_own_trace_in_one_statement(
    kernel: Kernel,
) -> None:
    news = [chat(new_user(), value) for value in (traceparent(1), None, traceparent(2))]
    before = submit_statements()
    await asyncio.gather(*(
        kernel.store.submit_chat(for_user(kernel.pool, n.user_id), n, content="hi",
                                 relay_grace_s=60, limits=LIMITS)
        for n in news
    ))  # fmt: skip
    count, calls = submit_statements()
    assert (count - before[0], calls - before[1]) == (1, 3)
    assert await kept(kernel, [n.task_id for n in news]) == {
        news[0].task_id: traceparent(1),
        news[1].task_id: None,
        news[2].task_id: traceparent(2),
    }


async def test_a_batch_and_its_then_task_keep_the_request_s_trace(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "_exporting", True)  # as configure_tracing sets it
    user = new_user()
    members, then = [Member("c", "one"), Member("c", "two")], Member("c", "sum up")
    with TracerProvider().get_tracer("test").start_as_current_span("POST /api/batches"):
        request = tracing.traceparent()
        await submit_batch(kernel.pool, for_user(kernel.pool, user), user_id=user,
                           members=members, max_attempts=3, relay_grace_s=60, run_at=None,
                           limits=LIMITS, then=then)  # fmt: skip
    assert request is not None
    ids = [m.task_id for m in [*members, then]]
    assert await kept(kernel, ids) == dict.fromkeys(ids, request)


async def test_the_relay_publishes_a_task_s_message_with_the_trace_it_kept(
    settings: Settings,
) -> None:
    async with open_kernel(settings, name="trace-relay", relay=False) as kernel:
        traced, untraced = chat(new_user(), traceparent(3)), chat(new_user(), None)
        async with kernel.pool.acquire() as conn:
            for new in (traced, untraced):
                await kernel.store.insert_task(conn, new, relay_grace_s=60)
        assert await kept(kernel, [traced.task_id]) == {traced.task_id: traceparent(3)}
        sent: dict[UUID, dict[str, Any]] = {}

        class Recording(OutboxRelay):
            async def _publish(self, row: Any) -> None:
                if row["task_id"] in (traced.task_id, untraced.task_id):
                    sent[row["task_id"]] = message_headers(row)
                else:
                    await super()._publish(row)

        await kernel.pool.execute(  # due now, as after the grace of a deferred publish
            "UPDATE outbox SET available_at = now() WHERE task_id = ANY($1::uuid[])",
            [traced.task_id, untraced.task_id],
        )
        relay = Recording(kernel.pool, kernel.broker, kernel.settings)
        while len(sent) < 2 and await relay.relay_once():
            pass
        assert sent[traced.task_id]["traceparent"] == traceparent(3)
        assert "traceparent" not in sent[untraced.task_id]


async def test_a_rerun_and_a_republish_go_out_in_the_trace_the_task_kept(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published at once (not by the relay), they carry the same context as the relay's copy
    would: the task's, not the operator's request's."""
    from taskfleet.broker import publisher
    from taskfleet.data import operations

    sent: list[dict[str, str]] = []

    async def recorded(_: Any, outgoing: Any, publish: Any = None) -> bool:
        sent.append(outgoing.trace)
        return True

    monkeypatch.setattr(publisher, "publish_after_commit", recorded)
    failed, retrying = chat(new_user(), traceparent(5)), chat(new_user(), traceparent(6))
    async with kernel.pool.acquire() as conn:
        for new, status in ((failed, "failed"), (retrying, "retrying")):
            await kernel.store.insert_task(conn, new, relay_grace_s=60)
            await conn.execute("UPDATE tasks SET status = $2 WHERE id = $1", new.task_id, status)
    db = for_user(kernel.pool, failed.user_id)
    assert await operations.rerun(kernel, db, failed.task_id, TaskType.CHAT) == "queued"
    db = for_user(kernel.pool, retrying.user_id)
    assert await operations.republish(kernel, db, retrying.task_id)
    assert sent == [{"traceparent": traceparent(5)}, {"traceparent": traceparent(6)}]

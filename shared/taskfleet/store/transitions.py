"""The fenced transitions of a task on the one message path: claim, complete, fail, retry, ...

Each is one round trip to a SQL function (store/sql/tf_*.sql), so that a claim or a completion
is one transaction; claims and completions that come at once share a statement (coalesce)."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from taskfleet.core.errors import StaleClaim
from taskfleet.core.messages import TaskMessage
from taskfleet.store.coalesce import Coalescer
from taskfleet.store.records import Claim, ClaimPolicy, Preload, Written

# Claims (or completions) in one statement, one or many: `n` maps the answers to the calls.
_CLAIM_MANY = (
    "SELECT m.n, c.*{preload} FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],"
    " $5::jsonb[], $6::integer[], $7::boolean[], $8::text[], $9::text[]) WITH ORDINALITY"
    " AS m(id, type, user_id, chat_id, payload, attempt, redelivered, copy, traceparent, n)"
    " CROSS JOIN LATERAL tf_claim(m.id, m.type, m.user_id, m.chat_id, m.payload, m.attempt,"
    " m.redelivered, $10, $11, $12, $13, m.copy, $14, $15, m.traceparent) c"
)
_PRELOAD_FIRST_PARAM = 16
_COMPLETE_MANY = (
    "SELECT n, seq FROM tf_complete_many($1::uuid[], $2::bigint[], $3::jsonb[], $4::text[])"
)


@dataclass(frozen=True, slots=True)
class _ClaimCall:
    msg: TaskMessage
    redelivered: bool
    queue: str
    policy: ClaimPolicy
    copy: str | None
    traceparent: str | None


@dataclass(frozen=True, slots=True)
class _CompleteCall:
    task_id: UUID
    fence: int
    output: Any
    reply: str | None


def _preloading(preload: Preload) -> str:
    """The column a claim adds for its handler (only for a `claimed` verdict)."""
    params = "".join(f", ${_PRELOAD_FIRST_PARAM + i}" for i in range(len(preload.args)))
    return (
        f", CASE WHEN c.verdict = 'claimed' THEN {preload.function}"
        f"(c.user_id, c.chat_id, m.id{params}) END AS preloaded"
    )


K = TypeVar("K")
C = TypeVar("C")


def _grouped(calls: Sequence[C], key: Callable[[C], K]) -> dict[K, list[tuple[int, C]]]:
    """The calls by `key`, each with its index in `calls`."""
    groups: dict[K, list[tuple[int, C]]] = {}
    for i, call in enumerate(calls):
        groups.setdefault(key(call), []).append((i, call))
    return groups


class Transitions:
    """The transitions of claimed tasks, each fenced: a stale holder's write raises StaleClaim."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Every kernel runs their loops (batched_claims, batched_completions).
        self._claims = Coalescer("claim", self._claim_many, self._claim_one)
        self._completions = Coalescer("complete", self._complete_many, self._complete_one)

    async def batched_claims(self) -> None:
        """The loop that sends claims made at once as one statement (run it supervised)."""
        await self._claims.run()

    async def batched_completions(self) -> None:
        """The loop that sends completions made at once as one statement (run it supervised)."""
        await self._completions.run()

    # -- the message path ---------------------------------------------------------------

    async def claim(
        self,
        msg: TaskMessage,
        *,
        redelivered: bool,
        queue: str,
        policy: ClaimPolicy,
        copy: str | None = None,
        traceparent: str | None = None,
    ) -> Claim:
        """Claim a delivery; `copy` is its COPY_HEADER (None: a backend's own publish);
        `traceparent` what a row the claim creates keeps (tracing.kept)."""
        return await self._claims(_ClaimCall(msg, redelivered, queue, policy, copy, traceparent))

    async def _claim_one(self, call: _ClaimCall) -> Claim:
        return (await self._claim_many([call]))[0]

    async def _claim_many(self, calls: Sequence[_ClaimCall]) -> list[Claim]:
        groups = _grouped(calls, lambda c: (c.queue, c.policy))
        async with self.pool.acquire() as conn:
            if len(groups) == 1:  # one statement: its own transaction
                return await self._claim_groups(conn, groups, len(calls))
            # All or nothing, so that a refused batch can be retried call by call.
            async with conn.transaction():
                return await self._claim_groups(conn, groups, len(calls))

    async def _claim_groups(
        self,
        conn: asyncpg.Connection,
        groups: dict[tuple[str, ClaimPolicy], list[tuple[int, _ClaimCall]]],
        count: int,
    ) -> list[Claim]:
        """One statement per queue and policy (a worker process has one of each)."""
        answers: dict[int, Claim] = {}
        for (queue, policy), group in groups.items():
            # In user and task order: two batches lock users (the concurrency limit) and rows
            # in the same order, which makes a deadlock between them rare (and one is retried
            # call by call when it happens: taskfleet.store.coalesce).
            group.sort(key=lambda ic: (ic[1].msg.user_id, ic[1].msg.task_id))
            preload = _preloading(policy.preload) if policy.preload else ""
            msgs = [c.msg for _, c in group]
            rows = await conn.fetch(
                _CLAIM_MANY.format(preload=preload),
                [m.task_id for m in msgs],
                [m.type.value for m in msgs],
                [m.user_id for m in msgs],
                [m.chat_id for m in msgs],
                [m.payload for m in msgs],
                [m.attempt for m in msgs],
                [c.redelivered for _, c in group],
                [c.copy for _, c in group],
                [c.traceparent for _, c in group],
                queue,
                policy.max_attempts,
                policy.user_limit,
                policy.throttle_s,
                policy.holder,
                policy.deadline_s,
                *(policy.preload.args if policy.preload else ()),
            )
            for row in rows:
                answer = dict(row)
                index = group[answer.pop("n") - 1][0]
                answers[index] = Claim(**answer)
        return [answers[i] for i in range(count)]

    async def complete(
        self, task_id: UUID, fence: int, output: Any, reply: str | None = None
    ) -> int:
        """Mark the task completed with `output` (and `reply` into its chat); the new event_seq.

        Raises StaleClaim when `fence` is no longer current: another holder owns the task.
        """
        seq = await self._completions(_CompleteCall(task_id, fence, output, reply))
        if seq is None:
            raise StaleClaim(f"task {task_id}: fence {fence} is no longer current")
        return seq

    async def _complete_one(self, call: _CompleteCall) -> int | None:
        return (await self._complete_many([call]))[0]

    async def _complete_many(self, calls: Sequence[_CompleteCall]) -> list[int | None]:
        order = sorted(range(len(calls)), key=lambda i: calls[i].task_id)
        rows = await self.pool.fetch(
            _COMPLETE_MANY,
            [calls[i].task_id for i in order],
            [calls[i].fence for i in order],
            [calls[i].output for i in order],
            [calls[i].reply for i in order],
        )
        answers = {order[r["n"] - 1]: r["seq"] for r in rows}
        return [answers[i] for i in range(len(calls))]

    async def fail(
        self, task_id: UUID, fence: int, error: dict[str, Any], queue: str, reason: str
    ) -> int:
        """Mark the task failed with `error`, its dead letter to `queue`.dlq in the same commit.

        `reason` goes in the dead letter's headers. Returns the new event_seq; StaleClaim if the
        fence is no longer current.
        """
        return await self._fenced(
            "SELECT tf_fail($1, $2, $3, $4, $5)", task_id, fence, error, queue, reason
        )

    async def retry(
        self, task_id: UUID, fence: int, error: dict[str, Any], queue: str, delay_s: float
    ) -> int:
        """Mark the task retrying: its next attempt goes to `queue` (outbox) in `delay_s` seconds.

        Returns the new event_seq; StaleClaim if the fence is no longer current.
        """
        return await self._fenced(
            "SELECT tf_retry($1, $2, $3, $4, $5)", task_id, fence, error, queue, delay_s
        )

    async def cancelled(self, task_id: UUID, fence: int, partial: Any) -> int:
        """Mark the task cancelled with `partial` (None keeps what was saved); the new event_seq.

        Raises StaleClaim if the fence is no longer current.
        """
        return await self._fenced("SELECT tf_cancelled($1, $2, $3)", task_id, fence, partial)

    async def release(self, task_id: UUID, fence: int) -> int:
        """Hand the task back uncounted; its next message is an outbox row due at once."""
        return await self._fenced("SELECT tf_release($1, $2)", task_id, fence)

    async def wait(
        self,
        task_id: UUID,
        fence: int,
        state: Any,
        children: list[dict[str, Any]],
        relay_grace_s: float,
    ) -> tuple[int, list[int]]:
        """processing -> waiting, `state` as checkpoint, with the children (taskfleet.path.waiting).

        Returns the event_seq and the children's outbox row ids, in the children's order."""
        sql = "SELECT * FROM tf_wait_for($1, $2, $3, $4, $5)"
        row = await self.pool.fetchrow(sql, task_id, fence, state, children, relay_grace_s)
        if row is None:
            raise StaleClaim(f"task {task_id}: fence {fence} is no longer current")
        return int(row["event_seq"]), list(row["outbox_ids"])

    async def progress(
        self, task_id: UUID, fence: int, fraction: float, stage: str | None, message: str | None
    ) -> Written:
        """Save progress; the answer says whether a cancel was requested meanwhile."""
        return await self._written(
            "UPDATE tasks SET progress = $3, stage = $4, status_message = $5, updated_at = now(),"
            " event_seq = event_seq + 1"
            " WHERE id = $1 AND fence = $2 AND status = 'processing'"
            " RETURNING event_seq, cancel_requested",
            task_id,
            fence,
            fraction,
            stage,
            message,
        )

    async def checkpoint(self, task_id: UUID, fence: int, state: Any) -> Written:
        """Save resumable state. Not an event: event_seq is returned unchanged."""
        return await self._written(
            "UPDATE tasks SET checkpoint = $3, updated_at = now()"
            " WHERE id = $1 AND fence = $2 AND status = 'processing'"
            " RETURNING event_seq, cancel_requested",
            task_id,
            fence,
            state,
        )

    async def partial(self, task_id: UUID, fence: int, output: Any, reply: str | None) -> Written:
        """Save partial output (and the partial reply text, status `streaming`). Not an event."""
        return await self._written(
            "WITH t AS (UPDATE tasks SET partial_output = $3, updated_at = now()"
            "  WHERE id = $1 AND fence = $2 AND status = 'processing'"
            "  RETURNING event_seq, cancel_requested),"
            " m AS (UPDATE messages SET content = $4, status = 'streaming',"
            "  updated_at = clock_timestamp()"
            "  WHERE $4::text IS NOT NULL AND task_id = $1 AND role = 'assistant'"
            "  AND EXISTS (SELECT 1 FROM t))"
            " SELECT event_seq, cancel_requested FROM t",
            task_id,
            fence,
            output,
            reply,
        )

    async def cancel_requested(self, task_ids: list[UUID]) -> list[UUID]:
        """Which of these tasks a user asked to cancel (the runner polls its in-flight ones)."""
        rows = await self.pool.fetch(
            "SELECT id FROM tasks WHERE id = ANY($1::uuid[]) AND cancel_requested", task_ids
        )
        return [r["id"] for r in rows]

    async def _fenced(self, sql: str, *args: Any) -> int:
        seq = await self.pool.fetchval(sql, *args)
        if seq is None:
            raise StaleClaim(f"task {args[0]}: fence {args[1]} is no longer current")
        return int(seq)

    async def _written(self, sql: str, *args: Any) -> Written:
        row = await self.pool.fetchrow(sql, *args)
        if row is None:
            raise StaleClaim(f"task {args[0]}: fence {args[1]} is no longer current")
        return Written(int(row["event_seq"]), bool(row["cancel_requested"]))

"""The task-state store on PostgreSQL: every transition of the one message path, fenced.

Each method is one round trip. The transitions themselves are SQL functions
(migrations/0002_task_functions.sql) so that a claim or a completion is one transaction.
"""

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import asyncpg

from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.errors import StaleClaim
from taskfleet.core.messages import TaskMessage
from taskfleet.store import quotas
from taskfleet.store.coalesce import Coalescer
from taskfleet.store.tenancy import Db, UserDb

TASK_COLUMNS = (
    "id, type, user_id, chat_id, parent_id, status, progress, stage, status_message, input,"
    " output, partial_output, checkpoint, error, attempts, max_attempts, next_attempt_at,"
    " cancel_requested, created_at, started_at, completed_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of tf_claim. Only a `claimed` verdict may run the handler."""

    verdict: str
    fence: int
    attempts: int
    max_attempts: int
    checkpoint: Any
    input: Any
    user_id: str
    chat_id: str | None
    created_at: datetime
    event_seq: int
    message_id: UUID | None
    preloaded: Any = None


@dataclass(frozen=True, slots=True)
class Written:
    """A fenced write's answer: the task's event_seq and whether a cancel was requested."""

    event_seq: int
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A committed task's message and the outbox row that keeps it until it is published.

    Whoever publishes it forgets that row, by its id: the row of this message and no other
    (a later one of the same task, a resume say, is another message still to send).
    """

    message: TaskMessage
    outbox_id: int


@dataclass(frozen=True, slots=True)
class ChatSubmission:
    task_id: UUID
    message_id: UUID
    created: bool
    outbox_id: int | None = None


class OverQuota(Exception):
    """The submission is over a quota of its user: nothing was stored."""

    def __init__(self, over: quotas.OverQuota) -> None:
        super().__init__(over.reason)
        self.over = over


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task to create. `input` becomes the message payload the handler gets."""

    type: TaskType
    user_id: str
    input: dict[str, Any]
    max_attempts: int
    chat_id: str | None = None
    parent_id: UUID | None = None
    idempotency_key: str | None = None
    task_id: UUID = field(default_factory=uuid4)

    def message(self) -> TaskMessage:
        return TaskMessage(task_id=self.task_id, type=self.type, user_id=self.user_id,
                           chat_id=self.chat_id, payload=self.input)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Preload:
    """What a claim reads for its handler in the same statement: one round trip less.

    `function(user_id, chat_id, task_id, *args)` is a SQL function of the migrations. It is
    called only for a `claimed` verdict, with the claimed row's own user and chat (never what
    the message says), and its answer is the handler's `TaskContext.preloaded`.
    """

    function: str
    args: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.function.isidentifier():  # it is spliced into the statement
            raise ValueError(f"not a function name: {self.function!r}")


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    max_attempts: int
    user_limit: int
    throttle_s: float
    preload: Preload | None = None
    holder: UUID | None = None  # the claiming consumer's row in the worker registry
    deadline_s: float | None = None  # the attempt's deadline, kept on the row


FORGET_EVERY_S = 0.05

# Chat submissions, one or many in one statement (taskfleet.store.coalesce): each counted against
# its user's quotas and, within them, the chat task with its outbox row and its two messages.
# tf_submit_chat scopes itself to its own user (migrations/0014), so the submissions of
# several users share a statement and a commit, each still under its user's row security.
_SUBMIT_MANY = (
    "SELECT x.n, s.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[],"
    " $6::jsonb[], $7::integer[], $8::text[], $9::text[], $10::float8[], $11::text[],"
    " $12::uuid[], $13::integer[], $14::integer[]) WITH ORDINALITY AS x(id, type, user_id,"
    " chat_id, parent_id, input, max_attempts, idempotency_key, queue, grace_s, content,"
    " message_id, per_minute, max_waiting, n)"
    " CROSS JOIN LATERAL tf_submit_chat(x.id, x.type, x.user_id, x.chat_id, x.parent_id,"
    " x.input, x.max_attempts, x.idempotency_key, x.queue, x.grace_s, x.content, x.message_id,"
    " x.per_minute, x.max_waiting) s"
)


# Claims (or completions) in one statement, one or many (taskfleet.store.coalesce). `n` maps the
# answers back to the calls.
_CLAIM_MANY = (
    "SELECT m.n, c.*{preload} FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],"
    " $5::jsonb[], $6::integer[], $7::boolean[], $8::text[]) WITH ORDINALITY"
    " AS m(id, type, user_id, chat_id, payload, attempt, redelivered, copy, n)"
    " CROSS JOIN LATERAL tf_claim(m.id, m.type, m.user_id, m.chat_id, m.payload, m.attempt,"
    " m.redelivered, $9, $10, $11, $12, m.copy, $13, $14) c"
)
_PRELOAD_FIRST_PARAM = 15
_COMPLETE_MANY = (
    "SELECT x.n, tf_complete(x.id, x.fence, x.output, x.reply) AS seq"
    " FROM unnest($1::uuid[], $2::bigint[], $3::jsonb[], $4::text[]) WITH ORDINALITY"
    " AS x(id, fence, output, reply, n)"
)


@dataclass(frozen=True, slots=True)
class _ClaimCall:
    msg: TaskMessage
    redelivered: bool
    queue: str
    policy: ClaimPolicy
    copy: str | None


@dataclass(frozen=True, slots=True)
class _SubmitCall:
    new: NewTask
    content: str
    message_id: UUID
    relay_grace_s: float
    limits: quotas.Limits


@dataclass(frozen=True, slots=True)
class _CompleteCall:
    task_id: UUID
    fence: int
    output: Any
    reply: str | None


def _submission_arrays(calls: Sequence[_SubmitCall]) -> list[list[Any]]:
    """_SUBMIT_MANY's arguments: one array per column, one element per call."""
    return [
        [c.new.task_id for c in calls], [c.new.type.value for c in calls],
        [c.new.user_id for c in calls], [c.new.chat_id for c in calls],
        [c.new.parent_id for c in calls], [c.new.input for c in calls],
        [c.new.max_attempts for c in calls], [c.new.idempotency_key for c in calls],
        [QUEUES[c.new.type].name for c in calls], [c.relay_grace_s for c in calls],
        [c.content for c in calls], [c.message_id for c in calls],
        [c.limits.per_minute for c in calls], [c.limits.max_waiting for c in calls],
    ]  # fmt: skip


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


class TaskStore:
    """asyncpg implementation of the task store. Construct with a pool; share it per process."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._forgotten: list[int] = []
        self._forget_batching = False
        # Every kernel runs their loops (batched_claims, batched_completions, batched_submissions).
        self._claims = Coalescer("claim", self._claim_many, self._claim_one)
        self._completions = Coalescer("complete", self._complete_many, self._complete_one)
        self._submissions = Coalescer("submit", self._submit_many, self._submit_one)

    async def batched_claims(self) -> None:
        await self._claims.run()

    async def batched_completions(self) -> None:
        await self._completions.run()

    async def batched_submissions(self) -> None:
        await self._submissions.run()

    # -- the message path ---------------------------------------------------------------

    async def claim(
        self, msg: TaskMessage, *, redelivered: bool, queue: str, policy: ClaimPolicy,
        copy: str | None = None,
    ) -> Claim:  # fmt: skip
        """Claim a delivery; `copy` is its COPY_HEADER (None: a backend's own publish)."""
        return await self._claims(_ClaimCall(msg, redelivered, queue, policy, copy))

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
        self, conn: asyncpg.Connection,
        groups: dict[tuple[str, ClaimPolicy], list[tuple[int, _ClaimCall]]], count: int,
    ) -> list[Claim]:  # fmt: skip
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
                [m.task_id for m in msgs], [m.type.value for m in msgs],
                [m.user_id for m in msgs], [m.chat_id for m in msgs], [m.payload for m in msgs],
                [m.attempt for m in msgs], [c.redelivered for _, c in group],
                [c.copy for _, c in group], queue, policy.max_attempts, policy.user_limit,
                policy.throttle_s, policy.holder, policy.deadline_s,
                *(policy.preload.args if policy.preload else ()),
            )  # fmt: skip
            for row in rows:
                answer = dict(row)
                index = group[answer.pop("n") - 1][0]
                answers[index] = Claim(**answer)
        return [answers[i] for i in range(count)]

    async def complete(
        self, task_id: UUID, fence: int, output: Any, reply: str | None = None
    ) -> int:
        seq = await self._completions(_CompleteCall(task_id, fence, output, reply))
        if seq is None:
            raise StaleClaim(f"task {task_id}: fence {fence} is no longer current")
        return seq

    async def _complete_one(self, call: _CompleteCall) -> int | None:
        return (await self._complete_many([call]))[0]

    async def _complete_many(self, calls: Sequence[_CompleteCall]) -> list[int | None]:
        order = sorted(range(len(calls)), key=lambda i: calls[i].task_id)
        rows = await self.pool.fetch(
            _COMPLETE_MANY, [calls[i].task_id for i in order], [calls[i].fence for i in order],
            [calls[i].output for i in order], [calls[i].reply for i in order],
        )  # fmt: skip
        answers = {order[r["n"] - 1]: r["seq"] for r in rows}
        return [answers[i] for i in range(len(calls))]

    async def fail(
        self, task_id: UUID, fence: int, error: dict[str, Any], queue: str, reason: str
    ) -> int:
        return await self._fenced(
            "SELECT tf_fail($1, $2, $3, $4, $5)", task_id, fence, error, queue, reason
        )

    async def retry(
        self, task_id: UUID, fence: int, error: dict[str, Any], queue: str, delay_s: float
    ) -> int:
        return await self._fenced(
            "SELECT tf_retry($1, $2, $3, $4, $5)", task_id, fence, error, queue, delay_s
        )

    async def cancelled(self, task_id: UUID, fence: int, partial: Any) -> int:
        return await self._fenced("SELECT tf_cancelled($1, $2, $3)", task_id, fence, partial)

    async def release(self, task_id: UUID, fence: int) -> int:
        """Hand the task back uncounted; its next message is an outbox row due at once."""
        return await self._fenced("SELECT tf_release($1, $2)", task_id, fence)

    async def wait(
        self, task_id: UUID, fence: int, state: Any, children: list[dict[str, Any]],
        relay_grace_s: float,
    ) -> tuple[int, list[int]]:  # fmt: skip
        """processing -> waiting, `state` as checkpoint, with the children (taskfleet.path.waiting).

        Returns the event_seq and the children's outbox row ids, in the children's order."""
        row = await self.pool.fetchrow(
            "SELECT * FROM tf_wait_for($1, $2, $3, $4, $5)",
            task_id, fence, state, children, relay_grace_s,
        )  # fmt: skip
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
            task_id, fence, fraction, stage, message,
        )  # fmt: skip

    async def checkpoint(self, task_id: UUID, fence: int, state: Any) -> Written:
        """Save resumable state. Not an event: event_seq is returned unchanged."""
        return await self._written(
            "UPDATE tasks SET checkpoint = $3, updated_at = now()"
            " WHERE id = $1 AND fence = $2 AND status = 'processing'"
            " RETURNING event_seq, cancel_requested",
            task_id, fence, state,
        )  # fmt: skip

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
            task_id, fence, output, reply,
        )  # fmt: skip

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

    # -- reads and submissions --------------------------------------------------------------

    async def task_owner(self, task_id: UUID) -> str | None:
        """Whose task this is: what a service token needs to act for that user."""
        owner: str | None = await self.pool.fetchval(
            "SELECT user_id FROM tasks WHERE id = $1", task_id
        )
        return owner

    async def get_task(self, task_id: UUID) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1", task_id)
        return dict(row) if row is not None else None

    async def insert_task(
        self,
        conn: asyncpg.Connection,
        new: NewTask,
        *,
        relay_grace_s: float,
    ) -> Outgoing | None:
        """Insert a task and its outbox row inside the caller's transaction.

        Returns its message and outbox row, or None when `idempotency_key` names an existing
        task of the user. The outbox row is due only after `relay_grace_s`: the caller
        publishes the message itself right after commit (`taskfleet.broker.publisher`) and
        deletes the row; the relay takes over if the caller dies or the publish fails.
        """
        inserted: UUID | None = await conn.fetchval(
            "INSERT INTO tasks (id, type, user_id, chat_id, parent_id, input, max_attempts,"
            " idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL"
            " DO NOTHING RETURNING id",
            new.task_id, new.type.value, new.user_id, new.chat_id, new.parent_id, new.input,
            new.max_attempts, new.idempotency_key,
        )  # fmt: skip
        if inserted is None:
            return None
        outbox_id: int = await conn.fetchval(
            "INSERT INTO outbox (task_id, queue, attempt, kind, available_at)"
            " VALUES ($1, $2, 1, 'task', now() + make_interval(secs => $3)) RETURNING id",
            new.task_id, QUEUES[new.type].name, relay_grace_s,
        )  # fmt: skip
        return Outgoing(new.message(), outbox_id)

    async def submit_chat(
        self,
        db: Db,
        new: NewTask,
        *,
        content: str,
        relay_grace_s: float,
        limits: quotas.Limits,
    ) -> ChatSubmission:
        """A chat task with its user message and assistant placeholder, in one transaction,
        if the user is within `limits` (else OverQuota)."""
        assert new.chat_id is not None
        call = _SubmitCall(new, content, uuid4(), relay_grace_s, limits)
        if isinstance(db, UserDb):
            if db.user_id != new.user_id:
                raise ValueError(f"a submission of {new.user_id} in a transaction of {db.user_id}")
            # The function takes its user's role and user itself: a user's Db would only add
            # the two round trips of its own SET LOCAL transaction. So the user's submission
            # goes with whatever others are being sent (taskfleet.store.coalesce).
            row = await self._submissions(call)
        else:  # an operator's: its own transaction, with its audit row
            row = (await db.fetch(_SUBMIT_MANY, *_submission_arrays([call])))[0]
        over = limits.over(row)
        if over is not None:
            raise OverQuota(over)
        task_id: UUID | None = row["task_id"]
        if task_id is None:
            row = await db.fetchrow(
                "SELECT t.id, m.id AS message_id FROM tasks t LEFT JOIN messages m"
                " ON m.task_id = t.id AND m.role = 'assistant'"
                " WHERE t.user_id = $1 AND t.idempotency_key = $2",
                new.user_id, new.idempotency_key,
            )  # fmt: skip
            return ChatSubmission(row["id"], row["message_id"], created=False)
        return ChatSubmission(task_id, call.message_id, created=True, outbox_id=row["outbox_id"])

    async def _submit_one(self, call: _SubmitCall) -> asyncpg.Record:
        return (await self._submit_many([call]))[0]

    async def _submit_many(self, calls: Sequence[_SubmitCall]) -> list[asyncpg.Record]:
        # In user order: two batches (two API replicas) lock their users' quota rows in the
        # same order, which makes a deadlock between them rare (and retried call by call).
        order = sorted(range(len(calls)), key=lambda i: calls[i].new.user_id)
        rows = await self.pool.fetch(_SUBMIT_MANY, *_submission_arrays([calls[i] for i in order]))
        answers = {order[r["n"] - 1]: r for r in rows}
        return [answers[i] for i in range(len(calls))]

    async def chat_messages(self, db: Db, chat_id: str, user_id: str) -> list[dict[str, Any]]:
        rows = await db.fetch(
            "SELECT id, role, content, status, task_id, created_at FROM messages"
            " WHERE chat_id = $1 AND user_id = $2 ORDER BY seq",
            chat_id, user_id,
        )  # fmt: skip
        return [dict(r) for r in rows]

    async def forget_outbox(self, outbox_id: int) -> None:
        """The writer published this outbox row's message itself: the relay need not.

        While `forget_in_batches` runs (every kernel runs it), the row goes with the next
        batch instead of in a transaction of its own.
        """
        if self._forget_batching:
            self._forgotten.append(outbox_id)
            return
        await self._delete_outbox_rows([outbox_id])

    async def forget_in_batches(self) -> None:
        """A kernel's loop: delete the outbox rows of published tasks, many per statement.

        A row that a crash leaves behind is published again by the relay after its grace; the
        claim settles the second copy as a duplicate. Nothing is lost either way.
        """
        self._forget_batching = True
        try:
            while True:
                await asyncio.sleep(FORGET_EVERY_S)
                await self._flush_forgotten()
        finally:
            self._forget_batching = False
            with contextlib.suppress(Exception):  # best effort: the relay covers the rest
                await asyncio.shield(self._flush_forgotten())

    async def _flush_forgotten(self) -> None:
        batch, self._forgotten = self._forgotten, []
        if batch:
            await self._delete_outbox_rows(batch)

    async def _delete_outbox_rows(self, ids: list[int]) -> None:
        # By row id: the rows of these messages, never a later row of the same task. SKIP
        # LOCKED: a row the relay holds is being published by it, and it deletes it itself.
        await self.pool.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id = ANY($1::bigint[])"
            " FOR UPDATE SKIP LOCKED)",
            ids,
        )

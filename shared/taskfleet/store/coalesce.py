"""Calls that come at once go to the database as one statement (the DataLoader pattern).

A worker's handler loops claim and complete tasks at the same moments (deliveries arrive in
bursts). `Coalescer` lets each caller await its own answer while one loop (owned by the
kernel's supervisor) sends what is pending as one statement, and what arrives during that
statement as the next one. An idle loop sends a single call at once; batches form while a
statement is already in flight, or, while calls keep coming, in a short linger (below). One
statement is one transaction, one commit and one round trip, where there were as many as
calls.

A batch that the database refuses as a whole (one bad value, a deadlock with another batch)
is sent again one call at a time, so that each caller gets its own answer or its own error.
An error that is not the statement's (the connection is gone) is every caller's error.
Without the loop running (it stopped, or never started) each call runs alone; calls in a
statement that the loop's stop interrupted get BatchInterrupted.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg
import structlog
from opentelemetry import trace

from taskfleet.core.metrics import BATCH_SIZE, Labelled

log = structlog.get_logger("taskfleet.coalesce")
_SIZES = Labelled(BATCH_SIZE)

Item = TypeVar("Item")
Answer = TypeVar("Answer")

# The statement, not the link, failed: another try one by one can give other answers.
STATEMENT_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.TransactionRollbackError,  # a deadlock with another batch
    asyncpg.ProgramLimitExceededError,
)


# While calls keep coming (a statement answered within BUSY_S), a batch smaller than
# LINGER_BELOW waits up to LINGER_S for more before it goes. At a moderate rate (a few hundred
# tasks a second, a shallow queue) each statement would otherwise carry one call, and its
# fixed cost (a round trip, a transaction, a commit) is then most of what a task costs the
# worker and PostgreSQL: at half its maximum the fleet spent 1.8x the CPU a task it spends
# saturated (docs/benchmarks.md, "Latency at a fixed rate"). A lone call on an idle loop
# still goes at once, and a batch of LINGER_BELOW already pays for its statement.
LINGER_S = 0.002
BUSY_S = 0.01
LINGER_BELOW = 8


class _Stopped(Exception):
    """The loop stopped before the call was sent: it runs alone."""


class BatchInterrupted(ConnectionError):
    """The loop stopped while the call's statement was in flight: it may or may not have
    committed. A link error (OSError) on purpose: the runner hands the message back, and
    the claim of its redelivery settles whichever it was. Running it again here could not."""


class Coalescer(Generic[Item, Answer]):
    def __init__(
        self,
        name: str,
        many: Callable[[Sequence[Item]], Awaitable[Sequence[Answer]]],
        one: Callable[[Item], Awaitable[Answer]],
        *,
        max_batch: int = 64,
        linger_s: float = LINGER_S,
    ) -> None:
        self.name = name
        self._event = f"{name} (batched)"  # on each caller's span, at its answer
        self._many, self._one, self._max = many, one, max_batch
        self._pending: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._wake, self._enough = asyncio.Event(), asyncio.Event()
        self._linger = linger_s
        self._answered = -BUSY_S  # (monotonic) when the last statement was answered
        self._running = False

    async def __call__(self, item: Item) -> Answer:
        """Run `item` in the next batch (alone if the loop is not running): its answer or error."""
        if not self._running:
            return await self._one(item)
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append((item, answer))
        self._wake.set()
        if len(self._pending) >= LINGER_BELOW:
            self._enough.set()
        # The shared statement runs in the loop's context, in no one trace: each caller's span
        # gets an event instead, at its answer, with the time from its call (the wait and the
        # statement). An event, not a span of its own: a span a call was two fifths of a W1
        # task's spans, and tracing's cost is by span (docs/benchmarks.md, tracing).
        span = trace.get_current_span()
        called = time.perf_counter()
        try:
            return await answer
        except _Stopped:
            return await self._one(item)
        finally:
            if span.is_recording():
                took = round((time.perf_counter() - called) * 1000, 3)
                span.add_event(self._event, {"taskfleet.batched_ms": took})

    async def run(self) -> None:
        """The loop: one statement at a time, each with everything pending (up to max_batch)."""
        self._running = True
        try:
            while True:
                await self._wake.wait()
                await self._linger_while_busy()
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                if not self._pending:
                    self._wake.clear()
                if batch:
                    await self._send(batch)
                    self._answered = time.monotonic()
        finally:
            self._running = False
            pending, self._pending = self._pending, []
            for _, answer in pending:
                if not answer.done():
                    answer.set_exception(_Stopped())

    async def _linger_while_busy(self) -> None:
        """Wait up to the linger for more calls, if calls keep coming and the batch is small."""
        if len(self._pending) >= LINGER_BELOW or time.monotonic() - self._answered > BUSY_S:
            return
        self._enough.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._linger):
                await self._enough.wait()

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        batch = [(item, answer) for item, answer in batch if not answer.done()]  # not cancelled
        if not batch:
            return
        _SIZES(self.name).observe(len(batch))
        try:
            await self._answer(batch)
        except BaseException:  # the loop is cancelled with a statement in flight
            for _, answer in batch:
                _settle(answer, BatchInterrupted(f"{self.name} batch interrupted"))
            raise

    async def _answer(self, batch: list[tuple[Item, asyncio.Future[Answer]]]) -> None:
        items = [item for item, _ in batch]
        try:
            answers = await self._many(items) if len(items) > 1 else [await self._one(items[0])]
        except STATEMENT_ERRORS as exc:
            if len(items) == 1:
                _settle(batch[0][1], exc)
                return
            log.info("batch_refused", batch=self.name, size=len(items), error=repr(exc))
            await asyncio.gather(*(self._alone(item, answer) for item, answer in batch))
            return
        except Exception as exc:  # the link, not the statement: every caller's error
            for _, answer in batch:
                _settle(answer, exc)
            return
        for (_, answer), value in zip(batch, answers, strict=True):
            if not answer.done():
                answer.set_result(value)

    async def _alone(self, item: Item, answer: asyncio.Future[Answer]) -> None:
        try:
            value = await self._one(item)
        except Exception as exc:
            _settle(answer, exc)
        else:
            if not answer.done():
                answer.set_result(value)


def _settle(answer: asyncio.Future[Answer], exc: BaseException) -> None:
    if not answer.done():
        answer.set_exception(exc)

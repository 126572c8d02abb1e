"""taskfleet.store.coalesce: calls made at once become one statement; a refused batch is retried
call by call; a lost link is every caller's error; without the loop each call runs alone."""

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest

from taskfleet.store.coalesce import LINGER_BELOW, BatchInterrupted, Coalescer


class Db:
    """Stands in for the statements: records how calls were sent, fails on demand."""

    def __init__(self) -> None:
        self.sent: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.refuse: set[int] = set()  # a batch holding one of these is refused as a whole
        self.down = False
        self.in_flight = asyncio.Event()  # a statement was sent

    async def many(self, items: Sequence[int]) -> list[int]:
        self.sent.append(list(items))
        self.in_flight.set()
        await self.gate.wait()
        if self.down:
            raise ConnectionResetError("link lost")
        if self.refuse & set(items):
            raise asyncpg.DataError("bad value in the batch")
        return [i * 10 for i in items]

    async def one(self, item: int) -> int:
        self.sent.append([item])
        self.in_flight.set()
        await self.gate.wait()
        if self.down:
            raise ConnectionResetError("link lost")
        if item in self.refuse:
            raise asyncpg.DataError(f"bad value {item}")
        return item * 10


async def running(
    db: Db, linger_s: float = 0.002
) -> tuple[Coalescer[int, int], asyncio.Task[None]]:
    calls = Coalescer("test", db.many, db.one, linger_s=linger_s)
    loop = asyncio.get_running_loop().create_task(calls.run())
    await asyncio.sleep(0)  # the loop starts and waits for work
    return calls, loop


async def stop(loop: asyncio.Task[None]) -> None:
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


async def test_calls_made_at_once_go_as_one_batch_and_each_gets_its_answer() -> None:
    db = Db()
    calls, loop = await running(db)
    assert await asyncio.gather(*(calls(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert db.sent == [[0, 1, 2, 3, 4]]
    await stop(loop)


async def test_calls_during_a_statement_form_the_next_batch() -> None:
    db = Db()
    calls, loop = await running(db)
    db.gate.clear()
    first = asyncio.ensure_future(calls(1))
    await db.in_flight.wait()  # the first statement is in flight
    later = [asyncio.ensure_future(calls(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    db.gate.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30, 40]
    assert db.sent == [[1], [2, 3, 4]]
    await stop(loop)


async def test_a_refused_batch_is_sent_again_call_by_call() -> None:
    db = Db()
    db.refuse = {3}
    calls, loop = await running(db)
    results = await asyncio.gather(*(calls(i) for i in (1, 2, 3, 4)), return_exceptions=True)
    assert results[:2] == [10, 20]
    assert isinstance(results[2], asyncpg.DataError)
    assert results[3] == 40
    assert db.sent == [[1, 2, 3, 4], [1], [2], [3], [4]]
    await stop(loop)


async def test_a_lost_link_is_every_callers_error_and_the_loop_goes_on() -> None:
    db = Db()
    calls, loop = await running(db)
    db.down = True
    results = await asyncio.gather(calls(1), calls(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionResetError) for r in results)
    db.down = False
    assert await calls(5) == 50
    await stop(loop)


async def test_without_the_loop_each_call_runs_alone() -> None:
    db = Db()
    calls = Coalescer("test", db.many, db.one)
    assert list(await asyncio.gather(calls(1), calls(2))) == [10, 20]
    assert db.sent == [[1], [2]]


async def test_when_the_loop_stops_a_call_in_flight_is_interrupted_a_waiting_one_runs_alone() -> (
    None
):
    db = Db()
    calls, loop = await running(db)
    db.gate.clear()
    first = asyncio.ensure_future(calls(1))
    await db.in_flight.wait()
    waiting = asyncio.ensure_future(calls(2))
    await asyncio.sleep(0)
    await stop(loop)  # cancels the statement in flight and the loop
    db.gate.set()
    with pytest.raises(BatchInterrupted):  # it may have committed: the caller hands it back
        await first
    assert await waiting == 20
    assert db.sent == [[1], [2]]


async def test_a_stop_during_the_call_by_call_retry_leaves_no_caller_waiting() -> None:
    db = Db()
    db.refuse = {2}
    retried = asyncio.Event()

    async def never(item: int) -> int:
        retried.set()
        await asyncio.Event().wait()  # a retry that never answers: the stop comes first
        return item

    db.one = never  # type: ignore[method-assign]
    calls, loop = await running(db)
    callers = [asyncio.ensure_future(calls(i)) for i in (1, 2)]
    await retried.wait()
    await stop(loop)
    for caller in callers:
        with pytest.raises(BatchInterrupted):
            await caller


async def test_a_cancelled_caller_is_not_sent() -> None:
    db = Db()
    calls, loop = await running(db)
    db.gate.clear()
    first = asyncio.ensure_future(calls(1))
    await db.in_flight.wait()
    gone, kept = asyncio.ensure_future(calls(2)), asyncio.ensure_future(calls(3))
    await asyncio.sleep(0)
    gone.cancel()
    db.gate.set()
    assert list(await asyncio.gather(first, kept)) == [10, 30]
    assert db.sent == [[1], [3]]
    await stop(loop)


async def test_a_lone_call_on_an_idle_loop_is_sent_at_once_not_after_the_linger() -> None:
    db = Db()
    calls, loop = await running(db, linger_s=3600.0)  # a linger would outlast the test
    assert await asyncio.wait_for(calls(1), timeout=10) == 10
    assert db.sent == [[1]]
    await stop(loop)


async def test_while_calls_keep_coming_a_small_batch_waits_for_more() -> None:
    db = Db()
    calls, loop = await running(db, linger_s=3600.0)
    assert await calls(0) == 0  # the loop was idle: sent at once; now it is busy
    first = asyncio.ensure_future(calls(1))
    for _ in range(5):  # turns enough for the loop to have sent it, had it not lingered
        await asyncio.sleep(0)
    assert db.sent == [[0]]
    # The calls made meanwhile join it; at LINGER_BELOW the batch goes without more wait.
    later = [asyncio.ensure_future(calls(i)) for i in range(2, LINGER_BELOW + 1)]
    answers = await asyncio.wait_for(asyncio.gather(first, *later), timeout=10)
    assert answers == [i * 10 for i in range(1, LINGER_BELOW + 1)]
    assert db.sent == [[0], list(range(1, LINGER_BELOW + 1))]
    await stop(loop)

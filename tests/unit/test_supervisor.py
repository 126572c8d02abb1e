"""taskfleet.core.supervisor.Supervisor: failures counted, loops restarted, aclose cancels."""

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest

from taskfleet.core.metrics import BACKGROUND_FAILURES
from taskfleet.core.supervisor import RestartBackoff, Supervisor


def failures(name: str) -> float:
    return float(BACKGROUND_FAILURES.labels(name)._value.get())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.005)


async def let_the_loop_run(turns: int = 50) -> None:
    """Give callbacks already scheduled (call_soon, zero backoff) their turns; no waiting."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_a_failing_task_is_counted_and_restarted() -> None:
    sup = Supervisor(name="unit", max_backoff_s=0.01)
    name = unique("flaky")
    calls = 0
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"boom {calls}")
        await release.wait()

    before = failures(name)
    try:
        sup.spawn(name, flaky, restart=True)
        await wait_until(lambda: calls >= 3, "the third start of the task")
        assert failures(name) - before == 2
        assert sup.running() == {name: True}
    finally:
        await sup.aclose()
    assert sup.running() == {name: False}


async def test_a_task_that_returns_is_restarted_without_counting_a_failure() -> None:
    sup = Supervisor(name="unit", max_backoff_s=0.01)
    name = unique("returns")
    calls = 0
    release = asyncio.Event()

    async def loop() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()

    before = failures(name)
    try:
        sup.spawn(name, loop, restart=True)
        await wait_until(lambda: calls >= 2, "the restart of a returned task")
        assert failures(name) == before
    finally:
        await sup.aclose()


@pytest.mark.parametrize("restart", [True, False])
async def test_restart_flag_decides_whether_a_failed_task_runs_again(restart: bool) -> None:
    # Zero backoff: a restart, if any, is scheduled within a few turns of the loop.
    sup = Supervisor(name="unit", max_backoff_s=0.0)
    name = unique("once")
    calls = 0
    release = asyncio.Event()

    async def fails_first() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("first run fails")
        await release.wait()

    before = failures(name)
    try:
        first = sup.spawn(name, fails_first, restart=restart)
        await first  # the supervisor owns the exception: the task itself ends cleanly
        assert failures(name) - before == 1
        await let_the_loop_run()
        if restart:
            assert calls == 2
            assert sup.running() == {name: True}
        else:
            assert calls == 1
            assert sup.running() == {name: False}
    finally:
        await sup.aclose()


async def test_aclose_cancels_a_long_running_task() -> None:
    sup = Supervisor(name="unit")
    name = unique("forever")
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = sup.spawn(name, forever)
    await asyncio.wait_for(started.wait(), timeout=5)
    assert sup.running() == {name: True}
    before = failures(name)
    await sup.aclose(timeout_s=5)
    assert task.cancelled()
    assert cancelled.is_set()
    assert sup.running() == {name: False}
    assert failures(name) == before  # a cancellation is not a failure


async def test_spawn_after_aclose_raises() -> None:
    sup = Supervisor(name="unit")
    await sup.aclose()
    ran = False

    async def job() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(RuntimeError, match="closing"):
        sup.spawn(unique("late"), job)
    await let_the_loop_run()
    assert ran is False
    assert sup.running() == {}


async def test_spawn_of_a_running_name_raises() -> None:
    sup = Supervisor(name="unit")
    name = unique("dup")
    try:
        sup.spawn(name, forever)
        with pytest.raises(RuntimeError, match="already running"):
            sup.spawn(name, forever)
    finally:
        await sup.aclose()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_restart_backoff_grows_while_failing_and_resets_after_a_healthy_run() -> None:
    clock, waits = FakeClock(), []

    async def sleep(seconds: float) -> None:  # records the backoff instead of waiting it
        waits.append(seconds)
        await asyncio.sleep(0)

    sup = Supervisor(name="unit", max_backoff_s=30, healthy_s=60, clock=clock, sleep=sleep)
    name = unique("weekly")
    runs = 0
    release = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 5:
            clock.now += 61  # this run was healthy for a minute before it failed
        if runs <= 6:
            raise RuntimeError(f"failure {runs}")
        await release.wait()

    try:
        sup.spawn(name, loop)
        await wait_until(lambda: runs >= 7, "the seventh start")
    finally:
        await sup.aclose()
    # Four quick failures back off 1, 2, 4, 8 s; the one after a healthy run waits 1 s
    # again, and the next quick one 2 s (without the reset: 16 s, then 30 s).
    assert waits == [1, 2, 4, 8, 1, 2]


def test_the_backoff_is_capped_and_a_clean_return_waits_half_a_second() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(max_s=30, healthy_s=60, clock=clock)
    delays = []
    for _ in range(8):
        backoff.started()
        delays.append(backoff.ended(failed=True))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    backoff.started()
    clock.now += 60
    assert (backoff.ended(failed=False), backoff.failures) == (0.5, 0)


async def forever() -> None:
    await asyncio.Event().wait()

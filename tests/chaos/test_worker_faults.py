"""Workers die at any moment: nothing accepted is lost, nothing completes twice."""

import asyncio
from collections.abc import Callable

import asyncpg

from taskfleet.core.settings import Settings
from tests.chaos.conftest import FULL, size
from tests.chaos.harness import Fleet, keep_killing, submit, verify
from tests.conftest import Proc


async def test_sigkill_a_random_worker_every_2s(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    n = size(400, 2000)
    fleet = Fleet(settings, spawn, workers=2, worker_env={"SCRIPTED_DELAY_MS": 2})
    await fleet.start()
    stop = asyncio.Event()
    # Every 2 s in the full run; the short run is over in seconds, so it kills faster.
    every_s = 2.0 if FULL else 0.7
    killer = asyncio.ensure_future(keep_killing(fleet, stop, every_s=every_s))
    try:
        # Submissions spread over 4 kill intervals at least: a fast fleet must not finish the
        # workload between two kills.
        posters = 16
        subs = await submit(
            fleet, n, "kills", concurrency=posters, pace_s=4 * every_s * posters / n
        )
        verdict = await verify(db, subs, timeout_s=180)
    finally:
        stop.set()
        kills = await killer
    print(verdict.line("worker-kills", kills=kills))
    assert kills >= 2
    assert (verdict.accepted, verdict.completed) == (n, n)
    assert (verdict.lost, verdict.duplicate_replies, verdict.wrong_replies, verdict.failed) == (
        0,
    ) * 4


async def test_crash_points_after_handler_commit_and_around_the_ack(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    n = size(300, 2000)
    faults = "after_handler:0.01,after_commit:0.01,before_ack:0.01,after_ack:0.01"
    fleet = Fleet(settings, spawn, workers=2, worker_env={"TASKFLEET_FAULTS": faults})
    await fleet.start()
    stop = asyncio.Event()

    async def resurrect() -> int:
        restarts = 0
        while not stop.is_set():
            restarts += fleet.restart_dead_workers()
            await asyncio.sleep(0.2)
        return restarts

    healer = asyncio.ensure_future(resurrect())
    try:
        subs = await submit(fleet, n, "crash")
        verdict = await verify(db, subs, timeout_s=180)
    finally:
        stop.set()
        restarts = await healer
    print(verdict.line("crash-points", restarts=restarts))
    assert restarts >= 1
    assert (verdict.accepted, verdict.completed) == (n, n)
    assert (verdict.lost, verdict.duplicate_replies, verdict.wrong_replies, verdict.failed) == (
        0,
    ) * 4

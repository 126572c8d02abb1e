"""Poison: always-failing tasks among healthy ones, and a message that kills its worker."""

import itertools
import json
from collections.abc import Callable

import asyncpg

from taskfleet.core.settings import Settings
from taskfleet.runtime.kernel import open_kernel
from tests.chaos.conftest import size
from tests.chaos.harness import Fleet, submit, verify
from tests.conftest import Proc, wait_for
from tests.integration.conftest import drain_dlq

POISON = {"TASKFLEET_FAULTS": "poison", "RETRY_BASE_S": 0.2}


async def test_always_failing_tasks_are_dead_lettered_after_max_attempts_others_unaffected(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    n, poisoned = size(200, 1000), size(5, 20)
    fleet = Fleet(settings, spawn, workers=2, worker_env=POISON)
    await fleet.start()
    async with open_kernel(settings, name="poison-test", relay=False) as kernel:
        await drain_dlq(kernel)
        healthy = await submit(fleet, n - poisoned, "healthy")
        bad = await submit(fleet, poisoned, "bad", words=" /poison-fail")
        good, failing = await verify(db, healthy, 60), await verify(db, bad, 60)

        async def letters() -> set[str] | None:
            found = {str(m.message_id) for m in await drain_dlq(kernel)}
            seen.update(found)
            return seen if len(seen) >= poisoned else None

        seen: set[str] = set()
        await wait_for(letters, what="the dead letters")
    print(good.line("poison-healthy"), "|", failing.line("poison-bad"))
    assert (good.completed, good.lost, good.failed) == (n - poisoned, 0, 0)
    assert (failing.failed, failing.completed) == (poisoned, 0)
    rows = await db.fetch(
        "SELECT attempts, max_attempts FROM tasks WHERE id = ANY($1::uuid[])", list(bad.accepted)
    )
    assert {(r["attempts"], r["max_attempts"]) for r in rows} == {(5, 5)}
    assert seen == {str(t) for t in bad.accepted}  # no healthy task was dead-lettered
    for task_id in bad.accepted:
        delays = _retry_delays(fleet, str(task_id))
        assert len(delays) == 4
        assert all(a < b for a, b in itertools.pairwise(delays))


async def test_a_message_that_kills_its_worker_every_time_ends_failed_and_dead_lettered(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    fleet = Fleet(settings, spawn, workers=2, worker_env=POISON)
    await fleet.start()
    async with open_kernel(settings, name="poison-test", relay=False) as kernel:
        await drain_dlq(kernel)
        crash = await submit(fleet, 1, "poison-crash", words=" /poison-crash")
        [task_id] = crash.accepted

        async def failed_while_we_restart_workers() -> bool:
            fleet.restart_dead_workers()
            status = await db.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)
            return bool(status == "failed")

        await wait_for(failed_while_we_restart_workers, timeout_s=120, what="the task failed")
        letters = await wait_for(lambda: drain_dlq(kernel), what="its dead letter")
    row = await db.fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
    crashes = sum(p.output().count('"fault_injected"') for p in fleet.spawned)
    print(f"chaos poison-crash: attempts={row['attempts']} crashes={crashes}")
    assert (row["status"], row["error"]["code"]) == ("failed", "worker_lost")
    assert row["attempts"] == row["max_attempts"] == crashes
    assert [m.message_id for m in letters] == [str(task_id)]


def _retry_delays(fleet: Fleet, task_id: str) -> list[float]:
    """The delays the workers scheduled for a task's retries, in attempt order."""
    found = []
    for proc in fleet.spawned:
        for line in proc.output().splitlines():
            if task_id in line and '"task_retry_scheduled"' in line:
                record = json.loads(line[line.index("{") :])
                found.append((record["attempt"], float(record["delay_s"])))
    return [delay for _, delay in sorted(found)]

"""PostgreSQL fails over under a running fleet: a primary and its synchronous standby
(deploy/local/postgres-pair), DATABASE_URL naming both with target_session_attrs=read-write.
Mid-run the primary is stopped at once (-m immediate, as a crash) and the standby promoted.
Every process finds the new primary without a restart, and no task that was answered 202 is
lost: synchronous replication had put each on the standby before its commit returned."""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from taskfleet.broker.topology import delete_namespace
from taskfleet.core.settings import Settings
from taskfleet.store.migrate import migrate
from taskfleet.store.pool import create_pool, with_database
from tests.chaos.conftest import size
from tests.chaos.harness import Fleet, Submissions, submit, verify
from tests.chaos.infra import can_operate_services
from tests.conftest import Proc, wait_for

pytestmark = pytest.mark.skipif(bool(can_operate_services()), reason=str(can_operate_services()))

SCRIPT = Path(__file__).parents[2] / "deploy" / "local" / "postgres-pair"
PORTS = ("5441", "5442")


def standby(action: str) -> str:
    """Run the standby script; its output."""
    done = subprocess.run(
        [str(SCRIPT), action, *PORTS], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip()


@pytest.fixture
async def on_pair(settings: Settings) -> AsyncIterator[Settings]:
    """The session's settings on a fresh primary and standby, in a namespace of their own (the
    session's queues hold messages of tasks this database does not have)."""
    await asyncio.to_thread(standby, "down")
    exported = await asyncio.to_thread(standby, "up")
    url = exported.splitlines()[-1].removeprefix("DATABASE_URL=")
    dsn = with_database(url, "taskfleet_failover")
    moved = settings.model_copy(
        update={"database_url": dsn, "namespace": f"{settings.namespace}fo"}
    )
    try:
        await migrate(dsn)
        yield moved
        await delete_namespace(moved)
    finally:
        await asyncio.to_thread(standby, "down")


async def test_the_primary_fails_over_to_its_standby(
    on_pair: Settings, spawn: Callable[..., Proc]
) -> None:
    n = size(200, 2000)
    fleet = Fleet(on_pair, spawn, workers=2)
    await fleet.start()
    db = await create_pool(on_pair.database_url, size=2)
    probes = Submissions()

    async def failover() -> float:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(standby, "failover")
        # Seconds from the failover until a new task completes on the new primary.
        start = time.monotonic()
        probe = await submit(fleet, 1, "failover-probe", deadline_s=90)
        probes.accepted.update(probe.accepted)
        [task_id] = probe.accepted

        async def completed() -> bool:
            try:
                status = await db.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)
            except (OSError, asyncpg.PostgresError):
                return False  # the pool's link to the old primary is found dead
            return bool(status == "completed")

        await wait_for(completed, timeout_s=90, what="a task after the failover")
        return time.monotonic() - start

    fault = asyncio.ensure_future(failover())
    try:
        subs = await submit(fleet, n, "failover", concurrency=4, pace_s=0.03)
    finally:
        recovery_s = await fault
    try:
        verdict = await verify(db, subs, timeout_s=120)
        probe_verdict = await verify(db, probes, timeout_s=30)
        on_standby = await db.fetchval(
            "SELECT NOT pg_is_in_recovery() AND inet_server_port() = $1", int(PORTS[1])
        )
    finally:
        await db.close()
    print(
        verdict.line("postgres-failover", recovery_s=round(recovery_s, 1), statuses=subs.statuses)
    )
    assert on_standby  # the pool, like every process, now talks to the promoted standby
    assert not [s for s in subs.statuses if s >= 500 and s != 503]
    assert subs.statuses.get(503, 0) == subs.retry_after_seen
    assert (verdict.accepted, verdict.completed) == (n, n)
    assert (verdict.lost, verdict.duplicate_replies, verdict.wrong_replies) == (0, 0, 0)
    assert probe_verdict.completed == 1
    for proc in [fleet.api, *fleet.chat]:  # none restarted: each found the new primary itself
        assert proc is not None
        assert proc.popen.poll() is None, proc.name

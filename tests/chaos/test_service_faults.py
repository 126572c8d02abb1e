"""The broker and the database fail under a running fleet: the API keeps its promises (202
means durable; 503 with Retry-After while the database is away; never a 500), workers never
acknowledge what they could not persist, and every accepted task completes exactly once."""

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest

from taskfleet.core.settings import Settings
from taskfleet.store.pool import create_pool
from tests.chaos.conftest import FULL, size
from tests.chaos.harness import Fleet, Submissions, submit, verify
from tests.chaos.infra import (
    SilentProxy,
    can_operate_services,
    port_of,
    postgres_restart,
    rabbitmqctl,
    via_port,
)
from tests.conftest import Proc, wait_for

pytestmark = pytest.mark.skipif(bool(can_operate_services()), reason=str(can_operate_services()))


async def test_broker_connections_closed_twice_and_the_broker_stopped(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    n, outage_s = size(300, 2000), 10.0 if FULL else 4.0
    fleet = Fleet(settings, spawn, workers=2)
    await fleet.start()
    recoveries: list[float] = []
    probes = Submissions()

    async def recovery(k: int) -> None:
        # A probe task of its own, so that recovery is measured even when the main workload
        # has already been submitted: seconds from the fault's end until it completes.
        start = time.monotonic()
        probe = await submit(fleet, 1, f"broker-probe-{k}")
        probes.accepted.update(probe.accepted)
        [task_id] = probe.accepted

        async def completed() -> bool:
            status = await db.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)
            return bool(status == "completed")

        await wait_for(completed, timeout_s=60, what="a probe task after the fault")
        recoveries.append(time.monotonic() - start)

    async def faults() -> None:
        for k in range(2):
            await asyncio.sleep(1.5)
            await asyncio.to_thread(rabbitmqctl, "close_all_connections", "chaos test")
            await recovery(k)
        await asyncio.sleep(1)
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        try:
            await asyncio.sleep(outage_s)
        finally:
            await asyncio.to_thread(rabbitmqctl, "start_app")
            await asyncio.to_thread(rabbitmqctl, "await_startup")
        await recovery(2)

    fault_task = asyncio.ensure_future(faults())
    try:
        subs = await submit(fleet, n, "broker", concurrency=4, pace_s=0.05)
    finally:
        await fault_task
    verdict = await verify(db, subs, timeout_s=120)
    probe_verdict = await verify(db, probes, timeout_s=30)
    print(
        verdict.line(
            "broker-faults", recoveries_s=[round(r, 1) for r in recoveries], statuses=subs.statuses
        )
    )
    assert set(subs.statuses) == {202}  # the API kept accepting through the outage
    assert all(r < 15 for r in recoveries)
    assert (verdict.accepted, verdict.completed) == (n, n)
    assert (verdict.lost, verdict.duplicate_replies, verdict.wrong_replies, verdict.failed) == (
        0,
    ) * 4
    assert (probe_verdict.completed, probe_verdict.duplicate_replies) == (3, 0)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restarts_mid_run(
    settings: Settings, spawn: Callable[..., Proc], mode: str
) -> None:
    n = size(200, 1000)
    fleet = Fleet(settings, spawn, workers=2)
    await fleet.start()

    async def fault() -> None:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(postgres_restart, settings.database_url, mode)

    fault_task = asyncio.ensure_future(fault())
    try:
        subs = await submit(fleet, n, f"pg-{mode}", concurrency=4, pace_s=0.03)
    finally:
        await fault_task
    db = await create_pool(settings.database_url, size=2)
    try:
        verdict = await verify(db, subs, timeout_s=120)
    finally:
        await db.close()
    print(
        verdict.line(f"postgres-{mode}", statuses=subs.statuses, retry_after=subs.retry_after_seen)
    )
    assert not [s for s in subs.statuses if s >= 500 and s != 503]
    assert subs.statuses.get(503, 0) == subs.retry_after_seen
    assert (verdict.accepted, verdict.completed) == (n, n)
    assert (verdict.lost, verdict.duplicate_replies, verdict.wrong_replies, verdict.failed) == (
        0,
    ) * 4


async def test_half_open_link_to_the_broker_is_noticed_and_replaced(
    settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    proxy = SilentProxy(port_of(settings.amqp_url))
    await proxy.start()
    amqp = via_port(settings.amqp_url, proxy.port)
    fleet = Fleet(settings, spawn, workers=1, worker_env={"AMQP_URL": amqp, "AMQP_HEARTBEAT_S": 5})
    try:
        await fleet.start()
        first = await submit(fleet, 20, "halfopen-a")
        assert (await verify(db, first, timeout_s=30)).completed == 20
        connects_before = fleet.chat[0].output().count('"amqp_connected"')
        proxy.go_silent()
        silenced = time.monotonic()

        async def reconnected() -> bool:
            return fleet.chat[0].output().count('"amqp_connected"') > connects_before

        await wait_for(reconnected, timeout_s=45, what="the worker to reconnect")
        noticed_in = time.monotonic() - silenced
        second = await submit(fleet, 50, "halfopen-b")
        verdict = await verify(db, second, timeout_s=60)
    finally:
        await proxy.close()
    print(verdict.line("half-open", noticed_in_s=round(noticed_in, 1)))
    assert noticed_in < 30
    assert (verdict.completed, verdict.lost, verdict.duplicate_replies) == (50, 0, 0)

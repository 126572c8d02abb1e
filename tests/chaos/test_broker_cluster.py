"""A three-node RabbitMQ cluster (deploy/local/rabbitmq-cluster) under a running fleet: the node
that leads the chat queue is killed with SIGKILL mid-run, or partitioned away (frozen until the
others count it gone) and let back. Every process moves to another node (AMQP_URL lists all
three), the quorum queue elects a new leader, the partition heals (autoheal restarts the losing
side), and every accepted task completes once."""

import asyncio
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from taskfleet.broker.topology import delete_namespace
from taskfleet.core.settings import Settings
from tests.chaos.conftest import size
from tests.chaos.harness import Fleet, Submissions, submit, verify
from tests.chaos.infra import can_operate_services
from tests.conftest import Proc, wait_for

pytestmark = pytest.mark.skipif(bool(can_operate_services()), reason=str(can_operate_services()))

SCRIPT = Path(__file__).parents[2] / "deploy" / "local" / "rabbitmq-cluster"
BASE_PORT = "5681"


def cluster(*args: str) -> str:
    """Run the cluster script; its output."""
    done = subprocess.run(
        [str(SCRIPT), *args, BASE_PORT], capture_output=True, text=True, timeout=400, check=True
    )
    return done.stdout.strip()


@pytest.fixture
async def on_cluster(settings: Settings) -> AsyncIterator[Settings]:
    """The session's settings with AMQP_URL naming the three nodes of a cluster started here."""
    exported = await asyncio.to_thread(cluster, "up")
    url = exported.splitlines()[-1].removeprefix("AMQP_URL=")
    moved = settings.model_copy(update={"amqp_url": url})
    try:
        yield moved
        await delete_namespace(moved)  # idle quorum queues keep their Raft members ticking
    finally:
        await asyncio.to_thread(cluster, "down")


async def test_the_node_leading_the_queue_is_killed(
    on_cluster: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    n = size(300, 3000)
    fleet = Fleet(on_cluster, spawn, workers=2)
    await fleet.start()
    probes = Submissions()

    async def kill_the_leader() -> tuple[str, float]:
        await asyncio.sleep(1.5)
        leader = await asyncio.to_thread(cluster, "leader", on_cluster.queue("chat_tasks"))
        await asyncio.to_thread(cluster, "kill", leader)
        # Seconds from the kill until a new task completes: the processes on the killed node
        # reconnect to another and the queue has a leader again.
        start = time.monotonic()
        probe = await submit(fleet, 1, "cluster-probe")
        probes.accepted.update(probe.accepted)
        [task_id] = probe.accepted

        async def completed() -> bool:
            status = await db.fetchval("SELECT status FROM tasks WHERE id = $1", task_id)
            return bool(status == "completed")

        await wait_for(completed, timeout_s=90, what="a task after the leader was killed")
        return leader, time.monotonic() - start

    fault = asyncio.ensure_future(kill_the_leader())
    try:
        subs = await submit(fleet, n, "cluster", concurrency=4, pace_s=0.02)
    finally:
        leader, recovery_s = await fault
    verdict = await verify(db, subs, timeout_s=120)
    await asyncio.to_thread(cluster, "start-node", leader)
    print(verdict.line("rabbitmq-leader-killed", node=leader, recovery_s=round(recovery_s, 1)))
    assert set(subs.statuses) == {202}  # the API kept accepting: its outbox held what waited
    assert verdict.lost == 0
    assert verdict.duplicate_replies == 0
    assert verdict.wrong_replies == 0
    assert verdict.completed == verdict.accepted
    assert (await verify(db, probes, timeout_s=30)).completed == 1
    killed = f"127.0.0.1:{int(BASE_PORT) + int(leader) - 1}"
    for proc in [fleet.api, *fleet.chat]:
        assert proc is not None
        connected = [
            re.findall(r'"node": "([^"]+)"', line)[0]
            for line in proc.output().splitlines()
            if '"event": "amqp_connected"' in line
        ]
        assert connected, proc.name
        assert connected[-1] != killed, (proc.name, connected)


async def test_the_node_leading_the_queue_is_partitioned_away_and_comes_back(
    on_cluster: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    n = size(300, 3000)
    fleet = Fleet(on_cluster, spawn, workers=2)
    await fleet.start()
    leader = await asyncio.to_thread(cluster, "leader", on_cluster.queue("chat_tasks"))
    other = "2" if leader != "2" else "1"
    # Frozen, the leader stops ticking: the others count it gone after the 10 s net_ticktime,
    # the clients on it after their heartbeats, and the queue elects a leader among the two.
    await asyncio.to_thread(cluster, "freeze", leader)
    start = time.monotonic()
    try:
        during = asyncio.ensure_future(submit(fleet, n, "partition", concurrency=4, pace_s=0.05))
        probe = await submit(fleet, 1, "partition-probe")
        assert (await verify(db, probe, timeout_s=90)).completed == 1
        recovery_s = time.monotonic() - start

        async def apart() -> bool:
            return await asyncio.to_thread(cluster, "running", other) == "2"

        await wait_for(apart, timeout_s=60, what=f"node {other} to count node {leader} gone")
        subs = await during
    finally:
        # Let go, it finds the partition; autoheal restarts it into the cluster.
        healed = await asyncio.to_thread(cluster, "thaw", leader)
    after = await submit(fleet, n, "healed", concurrency=4)
    for tag, sent in (("during", subs), ("after", after)):
        verdict = await verify(db, sent, timeout_s=120)
        print(verdict.line(f"rabbitmq-partition-{tag}", node=leader,
                           recovery_s=round(recovery_s, 1), thaw=healed))  # fmt: skip
        assert set(sent.statuses) == {202}
        assert verdict.lost == 0
        assert verdict.duplicate_replies == 0
        assert verdict.wrong_replies == 0
        assert verdict.completed == verdict.accepted
    assert healed.startswith("healed")


def test_the_script_names_no_leader_for_a_queue_it_does_not_have() -> None:
    with pytest.raises(subprocess.CalledProcessError) as caught:
        cluster("leader", "no-such-queue")
    assert "no leader found" in caught.value.stderr

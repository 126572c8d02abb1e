"""Key rotation on a running fleet (docs/security.md, "Rotating a key").

Real chat and tool workers are rolled to a new ENCRYPTION_KEYS one process at a time, as a
Kubernetes rollout does (the new process first, then SIGTERM to the old one), while
tool-using chats (`calc: N*2`) keep arriving straight on chat_tasks. Every value the agent and
the tools hand each other is sealed (arguments, results, checkpoints), so a process that
cannot open the key another one seals with meets it at once.

- In two phases (open first, then seal) no process ever meets a key it does not hold.
- In one step (the new key first at once) the processes still on the old list meet values
  under the new key: those tasks are retried (`unknown_key`), none fails `unsealable`, and
  every chat completes with the right answer.

The fleet runs on a database and namespace of its own: the session's leftovers (rows sealed
with the development key) must not reach workers that do not hold it. The workers use the
queues' own retry backoff, as in production (chat 1 s, tool 2 s, doubling), not the session's
shortened one: a retry for a key must give the roll time to go on.
"""

import asyncio
import contextlib
import json
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import asyncpg
import pytest

from taskfleet.broker import nodes
from taskfleet.broker.topology import delete_namespace
from taskfleet.core.constants import TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.security.crypto import new_key
from taskfleet.store.migrate import migrate
from taskfleet.store.pool import create_pool, drop_database, with_database
from tests.conftest import Proc, process_env, wait_for

pytestmark = pytest.mark.timeout(300)

K1, K2 = new_key("k1"), new_key("k2")
OLD, PHASE1, NEW = K1, f"{K1},{K2}", f"{K2},{K1}"
WORKERS = ("chat-0", "chat-1", "tool-0", "tool-1")


@pytest.fixture
async def private(settings: Settings) -> AsyncIterator[Settings]:
    """The session's settings on a fresh database and namespace."""
    tag = uuid.uuid4().hex[:10]
    dsn = with_database(settings.database_url, f"taskfleet_test_{tag}")
    mine = settings.model_copy(update={"database_url": dsn, "namespace": f"t{tag}"})
    await migrate(dsn)
    yield mine
    await delete_namespace(mine)
    await drop_database(dsn)


@pytest.fixture
async def db(private: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(private.database_url, size=2)
    yield pool
    await pool.close()


def log_lines(proc: Proc) -> list[dict[str, Any]]:
    lines = []
    for line in proc.output().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


@dataclass
class RollingFleet:
    settings: Settings
    spawn: Callable[..., Proc]
    running: dict[str, Proc] = field(default_factory=dict)
    every: list[Proc] = field(default_factory=list)  # every process ever started
    keys: dict[str, str] = field(default_factory=dict)  # process (log) name -> its keys

    async def start(self, name: str, keys: str) -> None:
        env = process_env(self.settings, ENCRYPTION_KEYS=keys)
        del env["RETRY_BASE_S"]  # the queues' own backoff (see the module's docstring)
        kind = name.split("-")[0]
        proc = self.spawn(
            ["worker", kind, "--concurrency", "4"], env, name=f"{name}-{len(self.every)}"
        )
        self.every.append(proc)
        self.keys[proc.name] = keys

        async def consuming() -> bool:
            assert proc.popen.poll() is None, proc.output()[-2000:]
            return any(line.get("event") == "worker_started" for line in log_lines(proc))

        await wait_for(consuming, timeout_s=60, what=f"{name} to start")
        self.running[name] = proc

    async def roll(self, name: str, keys: str) -> None:
        """Replace `name` with a process that has `keys`: the new one first, then the old
        one stops gracefully."""
        old = self.running[name]
        await self.start(name, keys)
        old.popen.send_signal(signal.SIGTERM)

        async def stopped() -> bool:
            return old.popen.poll() is not None

        await wait_for(stopped, timeout_s=60, what=f"the old {name} to stop")

    def events(self, event: str, kind: str = "") -> list[tuple[Proc, dict[str, Any]]]:
        """Every log line `event` of the processes of `kind` (chat, tool) ever started."""
        return [
            (proc, line)
            for proc in self.every
            if proc.name.startswith(kind)
            for line in log_lines(proc)
            if line.get("event") == event
        ]

    def retries_for_a_key(self, kind: str = "") -> list[tuple[Proc, dict[str, Any]]]:
        retries = self.events("task_retry_scheduled", kind)
        return [(proc, line) for proc, line in retries if line.get("error") == "unknown_key"]


@dataclass
class Traffic:
    """`calc: i*2` chats published straight to chat_tasks, one every `every_s`, until stopped."""

    settings: Settings
    every_s: float = 0.1
    sent: dict[UUID, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with await nodes.connect(self.settings) as conn:
            channel = await conn.channel(publisher_confirms=True)
            while not self._stop.is_set():
                i = len(self.sent)
                msg = TaskMessage(
                    task_id=uuid4(),
                    type=TaskType.CHAT,
                    user_id=f"rot-{i % 10}",
                    chat_id=f"rot-{i}",
                    payload={"content": f"calc: {i}*2"},
                )
                body = aio_pika.Message(
                    msg.dumps(),
                    message_id=str(msg.task_id),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await channel.default_exchange.publish(
                    body, routing_key=self.settings.queue("chat_tasks")
                )
                self.sent[msg.task_id] = i
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.every_s)

    def stop(self) -> None:
        self._stop.set()


@contextlib.asynccontextmanager
async def traffic(settings: Settings) -> AsyncIterator[Traffic]:
    chats = Traffic(settings)
    running = asyncio.ensure_future(chats.run())
    try:
        yield chats
    finally:
        chats.stop()
        await running


async def verify(db: asyncpg.Pool, chats: Traffic) -> list[asyncpg.Record]:
    """Every chat completed with its tool's answer; returns its tool calls' tasks."""
    ids = list(chats.sent)

    async def all_terminal() -> bool:
        done = await db.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])"
            " AND status IN ('completed', 'failed', 'cancelled')",
            ids,
        )
        return bool(done == len(ids))

    await wait_for(all_terminal, timeout_s=120, what="every chat to end")
    rows = await db.fetch(
        "SELECT id, status, error, output ->> 'reply' AS reply FROM tasks WHERE id = ANY($1)", ids
    )
    answers = {r["id"]: (r["status"], r["reply"]) for r in rows}
    expected = {task_id: ("completed", f"{i}*2 = {2 * i}") for task_id, i in chats.sent.items()}
    assert answers == expected
    children: list[asyncpg.Record] = await db.fetch(
        "SELECT status, error, input -> 'arguments' ->> 'kid' AS kid FROM tasks"
        " WHERE parent_id = ANY($1)",
        ids,
    )
    assert len(children) == len(ids)
    assert [dict(c) for c in children if c["status"] != "completed"] == []
    return children


async def test_a_rotation_in_two_phases_never_meets_a_key_a_process_does_not_hold(
    private: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    fleet = RollingFleet(private, spawn)
    await asyncio.gather(*(fleet.start(name, OLD) for name in WORKERS))
    async with traffic(private) as chats:
        for keys in (PHASE1, NEW):  # open first, then seal
            for name in WORKERS:
                await fleet.roll(name, keys)
    children = await verify(db, chats)
    print(f"chaos key-rotation-two-phases: chats={len(chats.sent)} rolls={2 * len(WORKERS)}")
    # Both keys sealed arguments while the roll went on...
    assert {c["kid"] for c in children} == {"k1", "k2"}
    # ...and no process ever met one it could not open
    assert fleet.retries_for_a_key() == []
    assert fleet.events("task_failed") == []


async def test_a_rotation_in_one_step_retries_what_old_processes_cannot_open(
    private: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool
) -> None:
    fleet = RollingFleet(private, spawn)
    await asyncio.gather(*(fleet.start(name, OLD) for name in WORKERS))

    def met_a_new_value(kind: str) -> Callable[[], Any]:
        async def probe() -> bool:
            return bool(fleet.retries_for_a_key(kind))

        return probe

    async with traffic(private) as chats:
        # A chat worker seals with k2 first: the tool workers cannot open its arguments yet
        await fleet.roll("chat-0", NEW)
        await wait_for(met_a_new_value("tool"), timeout_s=30, what="an unknown_key retry (tool)")
        # The tool workers seal results with k2: chat-1, still on k1, cannot open them
        await fleet.roll("tool-0", NEW)
        await fleet.roll("tool-1", NEW)
        await wait_for(met_a_new_value("chat"), timeout_s=30, what="an unknown_key retry (chat)")
        await fleet.roll("chat-1", NEW)
    children = await verify(db, chats)
    retries = fleet.retries_for_a_key()
    print(
        f"chaos key-rotation-one-step: chats={len(chats.sent)} unknown_key_retries={len(retries)}"
    )
    # Only processes still on the old list met values they could not open; they retried them,
    # and nothing failed (neither `unsealable` nor out of attempts)
    assert {fleet.keys[proc.name] for proc, _ in retries} == {OLD}
    assert {c["kid"] for c in children} == {"k1", "k2"}
    assert fleet.events("task_failed") == []

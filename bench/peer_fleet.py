"""The peers of `make bench-peers` (bench/compare.py): their processes, W1's messages in each
one's own wire format, and the figures from their rows.

Every peer runs in its virtualenv (.bench-venvs/NAME, from bench/peers/requirements-NAME.txt)
on a queue of its own (a quorum queue, as taskfleet's), and writes the table `peer_tasks` of
one database made for the run. One producer serves them all, the same as `taskfleet bench
--via amqp`: persistent messages, 256 publisher confirms in flight.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import orjson
from aiormq.exceptions import ChannelNotFoundEntity

from taskfleet.store.pool import drop_database, ensure_database

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "bench" / "peers"
VENVS = ROOT / ".bench-venvs"
PUBLISH_WINDOW = 256  # as taskfleet bench's
USERS = 500  # as taskfleet bench's

TABLE = """
CREATE TABLE peer_tasks (
    id uuid PRIMARY KEY, user_id text NOT NULL, chat_id text NOT NULL, content text NOT NULL,
    reply text, status text NOT NULL, attempts int NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(), completed_at timestamptz)
"""

Body = tuple[bytes, dict[str, Any]]  # the message body and its AMQP headers


def loop_message(task: dict[str, str], queue: str) -> Body:
    return orjson.dumps(task), {}


def dramatiq_message(task: dict[str, str], queue: str) -> Body:
    """Dramatiq's message: a JSON object naming the actor, with its arguments."""
    args = [task["task_id"], task["user_id"], task["chat_id"], task["content"]]
    body = {"queue_name": queue, "actor_name": "chat", "args": args, "kwargs": {},
            "options": {}, "message_id": task["task_id"],
            "message_timestamp": int(time.time() * 1000)}  # fmt: skip
    return orjson.dumps(body), {}


def celery_message(task: dict[str, str], queue: str) -> Body:
    """Celery's task message, protocol 2: the task in the headers, (args, kwargs, embed) in the
    body."""
    args = [task["task_id"], task["user_id"], task["chat_id"], task["content"]]
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    headers = {"lang": "py", "task": "chat", "id": task["task_id"], "root_id": task["task_id"],
               "parent_id": None, "group": None, "retries": 0, "eta": None, "expires": None,
               "timelimit": [None, None], "argsrepr": repr(args), "kwargsrepr": "{}",
               "origin": "bench", "ignore_result": True}  # fmt: skip
    return orjson.dumps([args, {}, embed]), headers


@dataclass(frozen=True)
class PeerKind:
    name: str
    argv: Callable[[Path], list[str]]  # the command, given the venv's python
    message: Callable[[dict[str, str], str], Body]
    consumers: int  # consumers on the queue once it is ready
    setup: str  # what the table says it ran


KINDS = {
    "loop": PeerKind(
        "loop", lambda py: [str(py), "loop_worker.py"], loop_message, 1,
        "aio-pika + asyncpg, 1 process, prefetch 64, a pool of 16",
    ),
    "dramatiq": PeerKind(
        "dramatiq",
        lambda py: [str(py), "-m", "dramatiq", "dramatiq_worker", "--processes", "2",
                    "--threads", "8", "--path", "."],
        dramatiq_message, 2, "2 processes x 8 threads, psycopg 3",
    ),
    "celery": PeerKind(
        "celery",
        lambda py: [str(py), "-m", "celery", "-A", "celery_worker", "worker", "--pool",
                    "prefork", "-c", "2", "--without-gossip", "--without-mingle",
                    "--without-heartbeat", "--loglevel", "warning"],
        celery_message, 1, "prefork 2, acks_late, prefetch 4 a process, psycopg 3",
    ),
}  # fmt: skip


@dataclass
class Peer:
    kind: PeerKind
    queue: str
    dsn: str
    amqp_url: str
    process: subprocess.Popen[bytes]
    log: Path


def python_of(name: str) -> Path:
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"bench: no virtualenv for {name} at {python.parent.parent}: make bench-peers"
        )
    return python


async def make_database(dsn: str) -> None:
    await ensure_database(dsn)
    db = await asyncpg.connect(dsn)
    try:
        await db.execute(TABLE)
    finally:
        await db.close()


def start_peer(name: str, dsn: str, amqp_url: str, tag: str) -> Peer:
    kind = KINDS[name]
    queue = f"peers{tag}.{name}"
    env = {**os.environ, "PEER_DATABASE_URL": dsn, "PEER_AMQP_URL": amqp_url, "PEER_QUEUE": queue}
    log = VENVS / f"{name}.log"  # its own logs (Celery warns about root), out of the table's way
    with log.open("wb") as out:
        process = subprocess.Popen(
            kind.argv(python_of(name)), cwd=PEERS_DIR, env=env, stdout=out, stderr=out,
            start_new_session=True,  # its own process group: Dramatiq and Celery fork
        )  # fmt: skip
    peer = Peer(kind, queue, dsn, amqp_url, process, log)
    asyncio.run(wait_consumers(peer))
    return peer


async def wait_consumers(peer: Peer, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    connection = await aio_pika.connect(peer.amqp_url)
    async with connection:
        while time.monotonic() < deadline:
            if peer.process.poll() is not None:
                code = peer.process.returncode
                raise SystemExit(f"bench: {peer.kind.name} exited ({code}), see {peer.log}")
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(peer.queue, passive=True)
                if (declared.declaration_result.consumer_count or 0) >= peer.kind.consumers:
                    return
            except ChannelNotFoundEntity:
                pass  # not declared yet
            await asyncio.sleep(0.2)
    raise SystemExit(f"bench: {peer.kind.name} did not consume from {peer.queue}, see {peer.log}")


def stop_peer(peer: Peer) -> None:
    with_group = peer.process.pid
    os.killpg(with_group, signal.SIGTERM)
    try:
        peer.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(with_group, signal.SIGKILL)
        peer.process.wait(timeout=10)


async def cleanup(peers: list[Peer], dsn: str, amqp_url: str) -> None:
    """Drop the run's database; delete the peers' queues (Dramatiq's delay and dead-letter
    queues too) and Celery's exchange."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for peer in peers:
            for name in (peer.queue, f"{peer.queue}.DQ", f"{peer.queue}.XQ", f"{peer.queue}.DQ.XQ"):
                await channel.queue_delete(name)
            await channel.exchange_delete(peer.queue)
    await drop_database(dsn)


async def run_round(peer: Peer, n: int, timeout_s: float = 600.0) -> dict[str, Any]:
    """W1 on one peer: publish n messages, wait for n completed rows, the figures."""
    db = await asyncpg.connect(peer.dsn)
    try:
        await db.execute("TRUNCATE peer_tasks")
        submitted = await publish(peer, n)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = await db.fetchval("SELECT count(*) FROM peer_tasks WHERE status = 'completed'")
            if done >= n:
                break
            await asyncio.sleep(0.2)
        rows = await db.fetch("SELECT id, attempts, completed_at FROM peer_tasks")
    finally:
        await db.close()
    return figures(rows, submitted)


async def publish(peer: Peer, n: int) -> dict[uuid.UUID, float]:
    submitted: dict[uuid.UUID, float] = {}
    run = uuid.uuid4().hex[:8]
    connection = await aio_pika.connect(peer.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)

        async def one(i: int) -> None:
            task_id = uuid.uuid4()
            task = {"task_id": str(task_id), "user_id": f"bench-{i % USERS}",
                    "chat_id": f"bench-{run}-{i % USERS}",
                    "content": f"message {i} of run {run}"}  # fmt: skip
            body, headers = peer.kind.message(task, peer.queue)
            message = aio_pika.Message(
                body, headers=headers, content_type="application/json",
                content_encoding="utf-8", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(task_id), correlation_id=str(task_id),
            )  # fmt: skip
            await channel.default_exchange.publish(message, routing_key=peer.queue, mandatory=True)
            submitted[task_id] = time.time()

        for start in range(0, n, PUBLISH_WINDOW):
            await asyncio.gather(*(one(i) for i in range(start, min(n, start + PUBLISH_WINDOW))))
    return submitted


def figures(rows: list[Any], submitted: dict[uuid.UUID, float]) -> dict[str, Any]:
    """As `taskfleet bench`'s: throughput from the first publish to the last completion,
    latency from the publish's confirm to the completion."""
    done = [r for r in rows if r["completed_at"] is not None and r["id"] in submitted]
    if not done:
        return {"throughput": 0.0, "e2e_p50_ms": None, "e2e_p99_ms": None, "completed": 0,
                "multi_attempt": 0}  # fmt: skip
    first = min(submitted.values())
    last: float = max(r["completed_at"].timestamp() for r in done)
    latencies: list[float] = sorted(
        (r["completed_at"].timestamp() - submitted[r["id"]]) * 1000 for r in done
    )

    def pct(p: int) -> float:
        return round(latencies[min(len(latencies) - 1, len(latencies) * p // 100)], 1)

    return {"throughput": round(len(done) / max(last - first, 1e-9), 1), "e2e_p50_ms": pct(50),
            "e2e_p99_ms": pct(99), "completed": len(done), "window": [first, last],
            "multi_attempt": sum(1 for r in rows if r["attempts"] > 1)}  # fmt: skip


if __name__ == "__main__":
    sys.exit("bench/peer_fleet.py is a module of bench/compare.py")

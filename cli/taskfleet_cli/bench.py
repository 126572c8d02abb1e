"""`taskfleet bench`: workload W1 (DESIGN.md §12) against a fleet that is already running.

N chat messages with the scripted provider, published straight to chat_tasks (`--via amqp`)
or posted to `POST /api/chat/stream` (`--via api`); then the figures, from the task rows:
throughput = N / (last completed_at - first submission), latency percentiles of
completed_at - submission, completed count, tasks that needed more than one attempt.

`p50_ms`, `p95_ms` and `p99_ms` are DESIGN.md §12's: completed_at - created_at of the row.
With `--via amqp` the worker creates the row when it claims the message, so that hides the
time spent in the queue; `e2e_p50_ms`, `e2e_p95_ms` and `e2e_p99_ms` count from the moment
the broker confirmed the publish (taken here, on the same clock as the database's), and the
throughput counts from the first publish. Via api both are the same: the API writes the row.
"""

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID, uuid4

import aio_pika
import aiohttp
import asyncpg
import orjson

from taskfleet.broker import nodes
from taskfleet.core.constants import TERMINAL, TaskType
from taskfleet.core.ids import uuid7
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.security.auth import token_for
from taskfleet.store.pool import create_pool

USERS = 500  # spread over many users: the per-user limit is not what W1 measures
PUBLISH_WINDOW = 256  # confirms in flight at once
API_CONCURRENCY = 64
JSON = {"Content-Type": "application/json"}
T = TypeVar("T")


async def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Submit --n chat messages, wait up to --timeout seconds for them to end, and print the
    figures as one JSON line. Exit 1 unless all of them completed."""
    run = uuid4().hex[:8]
    pool = await create_pool(
        settings.database_url, size=2, statement_cache=settings.database_statement_cache
    )
    watched: dict[str, int] = {}

    async def submit_all() -> dict[UUID, float]:
        if args.via == "amqp":
            submitted = await _via_amqp(settings, run, args.n)
        else:
            submitted = await _via_api(settings, run, args.n, args.url)
        await _wait_done(pool, list(submitted), args.timeout)
        return submitted

    try:
        if args.watch:
            submitted = await _watching(settings, args.url, watched, submit_all())
        else:
            submitted = await submit_all()
        figures = await _figures(pool, submitted, args.via)
    finally:
        await pool.close()
    print(orjson.dumps({"n": args.n, "via": args.via, **figures, **watched}).decode(), flush=True)
    return 0 if figures["completed"] == args.n else 1


def _message(run: str, i: int) -> TaskMessage:
    return TaskMessage(
        task_id=uuid7(),  # time-ordered, as a backend should make them (core/ids.py)
        type=TaskType.CHAT,
        user_id=f"bench-{i % USERS}",
        chat_id=f"bench-{run}-{i % USERS}",
        payload={"content": f"message {i} of run {run}"},
    )


async def _via_amqp(settings: Settings, run: str, n: int) -> dict[UUID, float]:
    submitted: dict[UUID, float] = {}
    connection = await nodes.connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = settings.queue("chat_tasks")

        async def one(i: int) -> None:
            msg = _message(run, i)
            await channel.default_exchange.publish(
                aio_pika.Message(
                    msg.dumps(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(msg.task_id),
                ),
                routing_key=queue,
                mandatory=True,
            )
            submitted[msg.task_id] = time.time()

        for start in range(0, n, PUBLISH_WINDOW):
            await asyncio.gather(*(one(i) for i in range(start, min(n, start + PUBLISH_WINDOW))))
    return submitted


async def _via_api(settings: Settings, run: str, n: int, url: str | None) -> dict[UUID, float]:
    """Posts from API_CONCURRENCY posters; `url` may name several API replicas, comma-separated,
    which the posters share in turn (as a load balancer would spread the connections)."""
    bases = (url or f"http://{settings.api_host}:{settings.api_port}").split(",")
    token = token_for(settings, "bench", scope="service", ttl_s=3600)
    submitted: dict[UUID, float] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {token}"}
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(
                    base.strip(),
                    headers=headers,
                    connector=aiohttp.TCPConnector(limit=API_CONCURRENCY),
                )
            )
            for base in bases
        ]

        async def poster(http: aiohttp.ClientSession) -> None:
            # orjson both ways and no TaskMessage: the client's CPU is counted in the figures.
            while not queue.empty():
                i = queue.get_nowait()
                body = orjson.dumps(
                    {
                        "chat_id": f"bench-{run}-{i % USERS}",
                        "content": f"message {i} of run {run}",
                        "user_id": f"bench-{i % USERS}",
                    }
                )
                async with http.post("/api/chat/stream", data=body, headers=JSON) as resp:
                    accepted: dict[str, Any] = orjson.loads(await resp.read())
                    if resp.status != 202:
                        raise RuntimeError(f"POST answered {resp.status}: {accepted}")
                submitted[UUID(accepted["task_id"])] = time.time()

        await asyncio.gather(*(poster(sessions[k % len(sessions)]) for k in range(API_CONCURRENCY)))
    return submitted


async def _watching(
    settings: Settings, url: str | None, counts: dict[str, int], work: Awaitable[T]
) -> T:
    """`work` with an all-users WebSocket (the chat backend's view) open; counts its events."""
    base = (url or f"http://{settings.api_host}:{settings.api_port}").split(",")[0]
    token = token_for(settings, "bench-watch", scope="service", ttl_s=3600)
    counts["watched_events"] = 0
    path = f"/ws/tasks?token={token}"
    async with aiohttp.ClientSession(base) as http, http.ws_connect(path) as ws:
        snapshot = await ws.receive_json(timeout=30)
        assert snapshot["type"] == "snapshot", snapshot

        async def count() -> None:
            async for message in ws:  # ends when work_then_close closes the socket
                if message.type == aiohttp.WSMsgType.TEXT:
                    counts["watched_events"] += 1

        async def work_then_close() -> T:
            try:
                return await work
            finally:
                await ws.close()

        result, _ = await asyncio.gather(work_then_close(), count())
        return result


async def _wait_done(pool: asyncpg.Pool, ids: list[UUID], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = await pool.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])",
            ids,
            list(TERMINAL),
        )
        if done == len(ids):
            return
        await asyncio.sleep(0.2)


async def _figures(pool: asyncpg.Pool, submitted: dict[UUID, float], via: str) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT id, status, attempts, created_at, completed_at FROM tasks"
        " WHERE id = ANY($1::uuid[])",
        list(submitted),
    )
    created = {r["id"]: r["created_at"].timestamp() for r in rows}
    if via == "api":  # the API wrote the row: its created_at is the submission
        submitted = created
    done = [r for r in rows if r["status"] == "completed"]
    first = min(submitted.values())
    last = max((r["completed_at"] for r in done), default=datetime.now(UTC)).timestamp()
    figures: dict[str, Any] = {"throughput": round(len(done) / max(last - first, 1e-9), 1)}
    for prefix, since in (("", created), ("e2e_", submitted)):
        latencies = sorted((r["completed_at"].timestamp() - since[r["id"]]) * 1000 for r in done)
        for p in (50, 95, 99):
            figures[f"{prefix}p{p}_ms"] = _pct(latencies, p)
    return figures | {
        "window": [first, last],  # (epoch s) what bench/run.py reads the cores' use over
        "completed": len(done),
        "multi_attempt": sum(1 for r in rows if r["attempts"] > 1),
    }


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 1)

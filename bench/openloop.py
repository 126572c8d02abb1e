"""`make bench-open`: workload W1 open-loop, latency at a fixed rate rather than throughput.

A private fleet as `make bench` starts it (bench/run.py: the API and one chat worker with no
flag). For each route, W1 first runs closed-loop (`taskfleet bench --watch`: with an all-users
WebSocket, as the runs have one, whose events cost the API and the listener CPU) to measure
the maximum; then chat messages arrive at a fixed fraction of it (50 % and 80 % by default)
for `--seconds`, from a producer that never waits for a completion: each arrival is its own
publish or POST, sent at its time whatever became of the earlier ones. For each run:
- accepted -> completed: from the moment the task was accepted (the broker's publish confirm
  via amqp, the 202 via api) to the row's completed_at;
- completed -> event: from completed_at to the `task.updated` completed event that an
  all-users WebSocket on the API receives;
- the rate reached, the cores busy, the producer's CPU an arrival, the fleet's CPU a task by
  component, and the API's and the worker's resident memory (now and peak) after it.

    python bench/openloop.py [--via amqp api] [--load 0.5 0.8] [--seconds 10] [--max-n 3000]
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import aio_pika
import aiohttp
import asyncpg
import orjson
from cpu import CoreSampler  # bench/cpu.py
from run import Fleet, cpu_by_group, rss_mib, run_bench, start_fleet, stop_fleet  # bench/run.py

from taskfleet.core.constants import TaskType
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.security.auth import token_for

USERS = 500  # as taskfleet bench's: the per-user limits are not what W1 measures
JSON = {"Content-Type": "application/json"}
Submit = Callable[[int], Awaitable[UUID]]


def settings_of(fleet: Fleet) -> Settings:
    return Settings(**{k: fleet.env[k] for k in ("DATABASE_URL", "AMQP_URL", "TASKFLEET_NAMESPACE",
                                                  "TASKFLEET_JWT_SECRET") if k in fleet.env})  # type: ignore[arg-type]  # fmt: skip


def pcts(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)

    def at(p: int) -> float | None:
        return (
            round(ordered[min(len(ordered) - 1, len(ordered) * p // 100)], 1) if ordered else None
        )

    return {"p50": at(50), "p95": at(95), "p99": at(99)}


async def arrivals(submit: Submit, rate: float, n: int) -> dict[UUID, float]:
    """n submissions at `rate` a second, each started at its time: none waits for another.
    Returns each task's acceptance time (time.time(), the database's clock too)."""
    accepted: dict[UUID, float] = {}
    running: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(i: int) -> None:
        task_id = await submit(i)
        accepted[task_id] = time.time()

    for i in range(n):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        running.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(running.discard)
    while running:
        await asyncio.gather(*running)
    return accepted


async def run_open(fleet: Fleet, via: str, rate: float, seconds: float) -> dict[str, Any]:
    settings, run, n = settings_of(fleet), uuid.uuid4().hex[:8], max(1, round(rate * seconds))
    token = token_for(settings, "bench", scope="service", ttl_s=3600)
    with (
        Listener(fleet.url, token) as listener,
        ThreadPoolExecutor(1) as waiter,
        CoreSampler() as cores,
    ):
        fleet_cpu = cpu_by_group(fleet.ours, fleet.env)
        started, began, producer_cpu = time.monotonic(), time.time(), time.process_time()
        async with aiohttp.ClientSession(fleet.url) as http:
            if via == "amqp":
                accepted = await via_amqp(settings, run, rate, n)
            else:
                accepted = await via_api(http, token, run, rate, n)
        sent_s, producer_cpu = time.monotonic() - started, time.process_time() - producer_cpu
        rows = await wait_completed(settings.database_url, list(accepted), timeout_s=300)
        spent = cpu_by_group(fleet.ours, fleet.env)
        loop = asyncio.get_running_loop()
        seen, closed = await loop.run_in_executor(
            waiter, listener.result, [str(r["id"]) for r in rows]
        )
    done = {r["id"]: r["completed_at"].timestamp() for r in rows if r["completed_at"]}
    to_done = [(done[t] - accepted[t]) * 1000 for t in done]
    to_event = [(seen[str(t)] - done[t]) * 1000 for t in done if str(t) in seen]
    rss = {name: rss_mib(p.pid) for name, p in zip(("api", "worker"), fleet.procs, strict=False)}
    # How much of the machine the run took, and how much of it the producer's own arrivals
    # (each its own publish and confirm, or POST) took from the fleet.
    busy = cores.busy_pct((began, max(done.values(), default=began)))
    return {"via": via, "rate": round(rate), "n": n, "sent_rate": round(n / sent_s),
            "cores_busy_pct": busy, "producer_cpu_ms_an_arrival": round(producer_cpu * 1000 / n, 3),
            "fleet_cpu_ms_a_task": {k: round((v - fleet_cpu.get(k, 0)) * 1000 / n, 3)
                                    for k, v in spent.items()},
            "completed": len(done), "accepted_to_completed_ms": pcts(to_done),
            "completed_to_event_ms": pcts(to_event), "events_missing": len(done) - len(to_event),
            "ws_close_code": closed, "rss": rss}  # fmt: skip


class Listener:
    """An all-users WebSocket on the API in a process of its own, so that its lag is not the
    producer's: it notes when each task's completed event arrives. `result(ids)` waits until
    it has the events of all `ids` (30 s at most) and returns them with the socket's close
    code (None: it stayed open; 4008: the API found it too slow)."""

    def __init__(self, url: str, token: str) -> None:
        self._ready, self._ids, self._out = mp.Event(), mp.Queue(), mp.Queue()  # type: ignore[var-annotated]
        self._process = mp.Process(
            target=_listen_main, args=(url, token, self._ready, self._ids, self._out)
        )

    def __enter__(self) -> "Listener":
        self._process.start()
        if not self._ready.wait(30):
            raise SystemExit("bench: the WebSocket listener did not connect")
        return self

    def result(self, ids: list[str]) -> tuple[dict[str, float], int | None]:
        self._ids.put(ids)
        seen, closed = self._out.get(timeout=90)
        return seen, closed

    def __exit__(self, *exc: object) -> None:
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()


def _listen_main(url: str, token: str, ready: Any, ids: Any, out: Any) -> None:
    asyncio.run(_listen(url, token, ready, ids, out))


async def _listen(url: str, token: str, ready: Any, ids_q: Any, out: Any) -> None:
    seen: dict[str, float] = {}  # task id -> when its completed event arrived
    async with (
        aiohttp.ClientSession(url) as http,
        http.ws_connect(f"/ws/tasks?token={token}", max_msg_size=0) as ws,
    ):
        assert (await ws.receive_json(timeout=30))["type"] == "snapshot"
        reader = asyncio.create_task(listen(ws, seen))
        ready.set()
        ids: list[str] | None = None
        while ids is None:  # a multiprocessing queue has no awaitable get
            await asyncio.sleep(0.1)
            with contextlib.suppress(queue.Empty):
                ids = ids_q.get_nowait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(i in seen for i in ids):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        reader.cancel()
        out.put((seen, ws.close_code))


async def listen(ws: aiohttp.ClientWebSocketResponse, seen: dict[str, float]) -> None:
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        event = orjson.loads(message.data)
        if event.get("type") == "task.updated" and event["task"]["status"] == "completed":
            seen.setdefault(event["task_id"], time.time())


async def via_amqp(settings: Settings, run: str, rate: float, n: int) -> dict[UUID, float]:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)

        async def submit(i: int) -> UUID:
            msg = TaskMessage(
                task_id=uuid.uuid4(), type=TaskType.CHAT, user_id=f"bench-{i % USERS}",
                chat_id=f"open-{run}-{i % USERS}", payload={"content": f"message {i}"},
            )  # fmt: skip
            body = aio_pika.Message(msg.dumps(), content_type="application/json",
                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                    message_id=str(msg.task_id))  # fmt: skip
            await channel.default_exchange.publish(
                body, routing_key=settings.queue("chat_tasks"), mandatory=True
            )
            return msg.task_id

        return await arrivals(submit, rate, n)


async def via_api(
    http: aiohttp.ClientSession, token: str, run: str, rate: float, n: int
) -> dict[UUID, float]:
    headers = {**JSON, "Authorization": f"Bearer {token}"}

    async def submit(i: int) -> UUID:
        body = orjson.dumps({"chat_id": f"open-{run}-{i % USERS}", "content": f"message {i}",
                             "user_id": f"bench-{i % USERS}"})  # fmt: skip
        async with http.post("/api/chat/stream", data=body, headers=headers) as resp:
            answer: dict[str, Any] = orjson.loads(await resp.read())
            if resp.status != 202:
                raise RuntimeError(f"POST answered {resp.status}: {answer}")
        return UUID(answer["task_id"])

    return await arrivals(submit, rate, n)


async def wait_completed(dsn: str, ids: list[UUID], timeout_s: float) -> list[Any]:
    db = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        query = "SELECT id, status, completed_at FROM tasks WHERE id = ANY($1::uuid[])"
        while True:
            rows: list[Any] = await db.fetch(query, ids)
            finished = [r for r in rows if r["status"] in ("completed", "failed", "cancelled")]
            if len(finished) == len(ids) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.1)
    finally:
        await db.close()


def line(figures: dict[str, Any], load: float) -> str:
    done, event = figures["accepted_to_completed_ms"], figures["completed_to_event_ms"]
    rss = figures["rss"]
    return (
        f"| {figures['via']} | {load:.0%} | {figures['rate']:,} ({figures['sent_rate']:,} sent)"
        f" | {done['p50']} / {done['p95']} / {done['p99']}"
        f" | {event['p50']} / {event['p95']} / {event['p99']} | {figures['events_missing']}"
        f" | {figures['cores_busy_pct']} % | {figures['producer_cpu_ms_an_arrival']}"
        f" | {rss['api']['rss_mib']} / {rss['worker']['rss_mib']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--via", nargs="*", choices=["amqp", "api"], default=["amqp", "api"])
    parser.add_argument("--load", nargs="*", type=float, default=[0.5, 0.8])
    parser.add_argument("--seconds", type=float, default=10.0, help="of arrivals per run")
    parser.add_argument("--max-n", type=int, default=3000, help="W1's N for the maximum")
    parser.add_argument("--max-rounds", type=int, default=3, help="closed-loop rounds, median")
    args = parser.parse_args()

    started = datetime.now(UTC)
    fleet = start_fleet(1, None)
    rows = []
    try:
        for via in args.via:
            maxima = [
                float(
                    str(
                        run_bench(fleet.env, args.max_n, via, fleet.url, fleet.ours, watch=True)[
                            "throughput"
                        ]
                    )
                )
                for _ in range(args.max_rounds)
            ]
            top = statistics.median(maxima)
            print(json.dumps({"via": via, "max_throughput": top, "rounds": maxima}), flush=True)
            for load in args.load:
                figures = asyncio.run(run_open(fleet, via, top * load, args.seconds))
                print(json.dumps({"load": load, "max": top, **figures}), flush=True)
                rows.append(line(figures, load))
    finally:
        stop_fleet(fleet)
    print(f"\nW1 open-loop, {args.seconds:g} s of arrivals a run, started {started:%F %H:%M} UTC\n")
    print(
        "| route | load | rate/s | accepted->completed p50/p95/p99 ms"
        " | completed->event p50/p95/p99 ms | events missing | cores busy"
        " | producer CPU ms an arrival | RSS MiB api / worker |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows), flush=True)


if __name__ == "__main__":
    main()

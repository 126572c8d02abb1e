"""The fault-injection harness: a real fleet (`taskfleet api` + chat workers) on the session's
database and namespace, driven over HTTP, and the check every scenario ends with."""

import asyncio
import contextlib
import functools
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aio_pika
import aiohttp
import asyncpg

from taskfleet.broker import nodes
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for

SERVICE_TOKEN = issue_token(JWT_SECRET, "chaos", scope="service", ttl_s=3600)


@dataclass
class Fleet:
    settings: Settings
    spawn: Callable[..., Proc]
    workers: int = 2
    worker_env: dict[str, Any] = field(default_factory=dict)
    tools: int = 0  # tool workers, for chats that call tools
    api: Proc | None = None
    chat: list[Proc] = field(default_factory=list)
    tool: list[Proc] = field(default_factory=list)
    spawned: list[Proc] = field(default_factory=list)  # every worker process ever started
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.api = self.spawn(["api", "--port", str(self.port)], process_env(self.settings))
        self.chat = [self.start_worker(i) for i in range(self.workers)]
        env = process_env(self.settings, **self.worker_env)
        self.tool = [
            self.spawn(["worker", "tool", "--concurrency", "8"], env, name=f"tool-{i}")
            for i in range(self.tools)
        ]
        await wait_for(self._ready, what="the fleet's API", timeout_s=30)
        for proc in [*self.chat, *self.tool]:  # their consumers are up: nothing waits on them
            await wait_for(
                functools.partial(_started, proc),
                what=f"{proc.name} to start",
                timeout_s=30,
            )

    def start_worker(self, i: int) -> Proc:
        env = process_env(self.settings, **self.worker_env)
        proc = self.spawn(["worker", "chat", "--concurrency", "8"], env, name=f"chat-{i}")
        self.spawned.append(proc)
        return proc

    def kill_worker(self, i: int) -> None:
        proc = self.chat[i]
        if proc.popen.poll() is None:
            os.kill(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)

    def restart_dead_workers(self) -> int:
        restarted = 0
        for i, proc in enumerate(self.chat):
            if proc.popen.poll() is not None:
                self.chat[i] = self.start_worker(i)
                restarted += 1
        return restarted

    async def _ready(self) -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{self.url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False


@dataclass
class Submissions:
    accepted: dict[UUID, str] = field(default_factory=dict)  # task id -> content
    statuses: dict[int, int] = field(default_factory=dict)  # HTTP status -> count
    retry_after_seen: int = 0


async def submit(
    fleet: Fleet,
    n: int,
    tag: str,
    *,
    concurrency: int = 16,
    pace_s: float = 0.0,
    deadline_s: float = 120,
    words: str = "",
    content: Callable[[str, int], str] | None = None,
) -> Submissions:
    """POST n chat messages (`<tag> message <i><words>`, or `content(tag, i)`); a 503 is
    retried after its Retry-After, as a client would."""
    out = Submissions()
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        todo.put_nowait(i)
    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    stop_at = time.monotonic() + deadline_s
    async with aiohttp.ClientSession(fleet.url, headers=headers) as http:

        async def poster() -> None:
            while not todo.empty():
                i = todo.get_nowait()
                text = content(tag, i) if content else f"{tag} message {i}{words}"
                body = {
                    "chat_id": f"{tag}-{i % 20}", "content": text,
                    "user_id": f"{tag}-user-{i % 50}", "idempotency_key": f"{tag}-{i}",
                }  # fmt: skip
                while time.monotonic() < stop_at:
                    try:
                        async with http.post("/api/chat/stream", json=body) as resp:
                            out.statuses[resp.status] = out.statuses.get(resp.status, 0) + 1
                            if resp.status == 202:
                                out.accepted[UUID((await resp.json())["task_id"])] = text
                                break
                            if resp.status == 503:
                                out.retry_after_seen += "Retry-After" in resp.headers
                                await asyncio.sleep(float(resp.headers.get("Retry-After", 1)))
                                continue
                            assert fleet.api is not None
                            errors = [
                                line
                                for line in fleet.api.output().splitlines()
                                if '"unhandled_error"' in line
                            ]
                            raise AssertionError(f"POST answered {resp.status}: {errors[-1:]}")
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.5)
                if pace_s:
                    await asyncio.sleep(pace_s)

        await asyncio.gather(*(poster() for _ in range(concurrency)))
    return out


@dataclass
class Verdict:
    accepted: int
    completed: int
    failed: int
    lost: int
    duplicate_replies: int
    wrong_replies: int
    multi_attempt: int

    def line(self, scenario: str, **extra: Any) -> str:
        figures = " ".join(f"{k}={v}" for k, v in {**self.__dict__, **extra}.items())
        return f"chaos {scenario}: {figures}"


def echo(content: str) -> str:
    """The scripted model's reply to a plain message."""
    return f"You said: {content}"


async def verify(
    db: asyncpg.Pool,
    subs: Submissions,
    timeout_s: float = 120,
    expect: Callable[[str], str] = echo,
) -> Verdict:
    """Wait until every accepted task is terminal, then count what the promise is about."""
    ids = list(subs.accepted)

    async def all_terminal() -> bool:
        done = await db.fetchval(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[])"
            " AND status IN ('completed', 'failed', 'cancelled')",
            ids,
        )
        return bool(done == len(ids))

    with contextlib.suppress(AssertionError):  # the verdict below says what is missing
        await wait_for(all_terminal, timeout_s=timeout_s, what="every accepted task terminal")
    rows = await db.fetch(
        "SELECT t.id, t.status, t.attempts, count(m.id) AS replies,"
        " max(m.content) AS reply FROM tasks t LEFT JOIN messages m"
        " ON m.task_id = t.id AND m.role = 'assistant'"
        " WHERE t.id = ANY($1::uuid[]) GROUP BY t.id",
        ids,
    )
    by_id = {r["id"]: r for r in rows}
    completed = [r for r in rows if r["status"] == "completed"]
    return Verdict(
        accepted=len(ids),
        completed=len(completed),
        failed=sum(1 for r in rows if r["status"] == "failed"),
        lost=sum(
            1
            for i in ids
            if i not in by_id or by_id[i]["status"] not in ("completed", "failed", "cancelled")
        ),
        duplicate_replies=sum(1 for r in rows if r["replies"] > 1),
        wrong_replies=sum(1 for r in completed if r["reply"] != expect(subs.accepted[r["id"]])),
        multi_attempt=sum(1 for r in rows if r["attempts"] > 1),
    )


async def keep_killing(fleet: Fleet, stop: asyncio.Event, every_s: float) -> int:
    """SIGKILL a random chat worker every `every_s` and start it again; returns the kills."""
    kills = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            fleet.kill_worker(random.randrange(len(fleet.chat)))
            kills += 1
            fleet.restart_dead_workers()
    return kills


def worker_port(proc: Proc) -> int | None:
    """The metrics port a worker logged at start (METRICS_PORT=0 in the tests)."""
    for line in proc.output().splitlines():
        if '"worker_started"' in line:
            return int(json.loads(line)["metrics_port"])
    return None


async def readiness(proc: Proc) -> dict[str, Any]:
    """A worker's /readyz answer."""
    port = worker_port(proc)
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as r:
        body: dict[str, Any] = await r.json()
        return body


async def publish_straight(settings: Settings, messages: list[TaskMessage]) -> None:
    """As a chat backend may (DESIGN.md §5): v1 messages straight to chat_tasks, confirmed."""
    connection = await nodes.connect(settings)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for msg in messages:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    msg.dumps(),
                    message_id=str(msg.task_id),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=settings.queue("chat_tasks"),
            )


async def dead_letters(settings: Settings, queue: str = "chat_tasks") -> int:
    """Messages now in `<queue>.dlq`."""
    connection = await nodes.connect(settings)
    async with connection:
        channel = await connection.channel()
        dlq = await channel.declare_queue(settings.queue(f"{queue}.dlq"), passive=True)
        return int(dlq.declaration_result.message_count or 0)


async def _started(proc: Proc) -> bool:
    return '"worker_started"' in proc.output()

"""`make soak`: mixed traffic through the API for a long time, under faults.

A private fleet (the API, 2 chat workers, a tool worker, a doc worker) on its own database
and namespace gets chats, tool-using chats (`calc:`) and text documents through the API for
`--minutes` (30), while a random worker is SIGKILLed (and started again) every `--kill-every`
seconds (10) and PostgreSQL (the cluster serving DATABASE_URL's port) is restarted every
`--restart-every` seconds (300). At the end it
waits for every accepted task to be terminal and prints one JSON line: accepted, completed,
failed, lost (never terminal), stuck (not terminal after the wait), duplicate and wrong
replies, the faults made, and each process's resident memory at start, middle and end.

    python bench/soak.py [--minutes 30] [--rate 10] [--kill-every 10] [--restart-every 300]
"""

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from taskfleet.broker.topology import delete_namespace
from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from taskfleet.store.pool import drop_database, with_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.chaos.infra import postgres_restart

WORKERS = {"chat-1": "chat", "chat-2": "chat", "tool-1": "tool", "doc-1": "doc"}
TERMINAL = ("completed", "failed", "cancelled")
# Every ten submissions: six chats, three tool-using chats, one document.
KINDS = ("chat", "calc", "chat", "calc", "chat", "doc", "chat", "calc", "chat", "chat")


@dataclass
class Fleet:
    env: dict[str, str]
    url: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0
    restarts: int = 0

    def start(self, name: str, args: list[str]) -> None:
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "taskfleet_cli", *args], env=self.env, stdout=subprocess.DEVNULL
        )

    def kill_one(self) -> None:
        name = random.choice(list(WORKERS))
        os.kill(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)
        self.kills += 1
        self.start(name, ["worker", WORKERS[name]])

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(timeout=60)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]
    return round(int(kib) / 1024, 1)


@dataclass
class Traffic:
    url: str
    token: str
    accepted: dict[str, str] = field(default_factory=dict)  # task id -> expected reply or kind
    statuses: dict[int, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event, rate: float) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        session = aiohttp.ClientSession(self.url, headers=headers)
        # The group owns every request until it ends.
        async with session as http, asyncio.TaskGroup() as requests:
            i = 0
            while not stop.is_set():
                requests.create_task(self.one(http, i))
                i += 1
                await asyncio.sleep(1 / rate)

    async def one(self, http: aiohttp.ClientSession, i: int) -> None:
        kind = KINDS[i % len(KINDS)]
        user = f"soak-{i % 40}"
        for _ in range(60):  # a 503 (the database restarting) is retried, as a client would
            try:
                if kind == "doc":
                    form = aiohttp.FormData()
                    form.add_field(
                        "file",
                        f"soak document {i}\n".encode() * 20,
                        filename=f"doc-{i}.txt",
                        content_type="text/plain",
                    )
                    resp = await http.post(f"/api/documents?user_id={user}", data=form)
                else:
                    content = f"calc: {i}*3" if kind == "calc" else f"soak message {i}"
                    body = {"chat_id": f"c-{i % 30}", "content": content, "user_id": user,
                            "idempotency_key": f"soak-{i}"}  # fmt: skip
                    resp = await http.post("/api/chat/stream", json=body)
                async with resp:
                    self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
                    if resp.status == 202:
                        task_id = (await resp.json())["task_id"]
                        self.accepted[task_id] = {
                            "chat": f"You said: soak message {i}",
                            "calc": f"{i}*3 = {3 * i}",
                            "doc": "doc",
                        }[kind]
                        return
                    if resp.status not in (503, 429):
                        return
                    await asyncio.sleep(float(resp.headers.get("Retry-After", 1)))
            except aiohttp.ClientError:
                if kind == "doc":
                    return  # no idempotency key: a retry could make a second document
                await asyncio.sleep(1)


async def verdict(dsn: str, traffic: Traffic, wait_s: float) -> dict[str, Any]:
    ids = [uuid.UUID(t) for t in traffic.accepted]
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            left = await conn.fetchval(
                "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status <> ALL($2)",
                ids,
                list(TERMINAL),
            )
            if left == 0:
                break
            await asyncio.sleep(2)
        rows = await conn.fetch(
            "SELECT t.id, t.status, count(m.id) AS replies, max(m.content) AS reply FROM tasks t"
            " LEFT JOIN messages m ON m.task_id = t.id AND m.role = 'assistant'"
            " WHERE t.id = ANY($1::uuid[]) GROUP BY t.id",
            ids,
        )
        failed = await conn.fetch(
            "SELECT type, error ->> 'code' AS code, count(*) AS n FROM tasks"
            " WHERE id = ANY($1::uuid[]) AND status = 'failed' GROUP BY 1, 2",
            ids,
        )
    finally:
        await conn.close()
    found = {str(r["id"]): r for r in rows}
    expected = traffic.accepted
    return {
        "accepted": len(ids),
        "completed": sum(1 for r in rows if r["status"] == "completed"),
        "failed": sum(1 for r in rows if r["status"] == "failed"),
        "lost": sum(1 for t in expected if t not in found),
        "stuck": sum(1 for r in rows if r["status"] not in TERMINAL),
        "failed_by": {f"{r['type']}/{r['code']}": r["n"] for r in failed},
        "duplicate_replies": sum(1 for r in rows if r["replies"] > 1),
        "wrong_replies": sum(
            1
            for t, r in found.items()
            if r["status"] == "completed" and expected[t] != "doc" and r["reply"] != expected[t]
        ),
    }


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    dsn = with_database(Settings().database_url, f"taskfleet_soak_{tag}")
    secret = uuid.uuid4().hex * 2
    port = 19000 + int(tag[:4], 16) % 1000
    env = {**os.environ, "DATABASE_URL": dsn, "TASKFLEET_NAMESPACE": f"soak{tag}",
           "TASKFLEET_JWT_SECRET": secret, "LOG_LEVEL": "warning", "METRICS_PORT": "0",
           "API_METRICS_PORT": "0",
           "RECONCILE_AFTER_S": "30"}  # fmt: skip
    migrate = [sys.executable, "-m", "taskfleet_cli", "migrate"]
    await asyncio.to_thread(subprocess.run, migrate, env=env, check=True, stdout=subprocess.DEVNULL)
    fleet = Fleet(env, f"http://127.0.0.1:{port}")
    fleet.start("api", ["api", "--port", str(port)])
    for name, worker in WORKERS.items():
        fleet.start(name, ["worker", worker])
    memory: dict[str, dict[str, float]] = {}
    traffic = Traffic(fleet.url, issue_token(secret, "soak", scope="service", ttl_s=86400))
    stop = asyncio.Event()
    try:
        await asyncio.sleep(3)  # they start and subscribe
        memory["start"] = {n: rss_mib(p.pid) for n, p in fleet.procs.items()}
        load = asyncio.ensure_future(traffic.run(stop, args.rate))
        started = time.monotonic()
        next_kill, next_restart = args.kill_every, args.restart_every
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            await asyncio.sleep(1)
            if elapsed >= next_kill:
                fleet.kill_one()
                next_kill += args.kill_every
            if elapsed >= next_restart:
                await asyncio.to_thread(postgres_restart, dsn, "fast")
                fleet.restarts += 1
                next_restart += args.restart_every
            if "middle" not in memory and elapsed >= args.minutes * 30:
                memory["middle"] = {n: rss_mib(p.pid) for n, p in fleet.procs.items()}
        stop.set()
        await load
        found = await verdict(dsn, traffic, wait_s=300)
        memory["end"] = {n: rss_mib(p.pid) for n, p in fleet.procs.items()}
    finally:
        fleet.stop()
        await drop_database(dsn)
        await delete_namespace(Settings(DATABASE_URL=dsn, TASKFLEET_NAMESPACE=f"soak{tag}"))
    return {"minutes": args.minutes, **found, "kills": fleet.kills,
            "postgres_restarts": fleet.restarts, "statuses": traffic.statuses,
            "rss_mib": memory}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", 30)))
    parser.add_argument("--rate", type=float, default=10.0, help="submissions per second")
    parser.add_argument("--kill-every", type=float, default=10.0)
    parser.add_argument("--restart-every", type=float, default=300.0)
    print(json.dumps(asyncio.run(soak(parser.parse_args()))), flush=True)

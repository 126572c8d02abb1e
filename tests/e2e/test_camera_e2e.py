"""Periodic capture with two real `taskfleet worker camera` processes and a real camera served by
the test: one scheduler between them, captures at the interval and none doubled, and capture
goes on when the scheduler's holder is SIGKILLed."""

import itertools
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg
import pytest

from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.camera_server import FakeCamera
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for

INTERVAL_S = 1


def events(proc: Proc) -> list[str]:
    out = []
    for line in proc.output().splitlines():
        try:
            out.append(json.loads(line)["event"])
        except (ValueError, KeyError, TypeError):
            continue  # not one of our log lines
    return out


def leaders(workers: list[Proc]) -> list[Proc]:
    return [w for w in workers if "camera_scheduler_leader" in events(w)]


async def api_ready(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def captures(db: asyncpg.Pool, user: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT f.slot_at, f.created_at, t.status FROM camera_frames f"
        " JOIN tasks t ON t.id = f.task_id WHERE f.user_id = $1 ORDER BY f.slot_at",
        user,
    )
    return [dict(r) for r in rows]


def completed_captures(db: asyncpg.Pool, user: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        done: int = sum(r["status"] == "completed" for r in await captures(db, user))
        return done >= n

    return probe


@pytest.fixture
async def camera() -> AsyncIterator[FakeCamera]:
    cam = FakeCamera()
    await cam.start()
    yield cam
    await cam.stop()


class TestPeriodicCapture:
    async def test_one_scheduler_across_two_replicas_survives_the_death_of_its_holder(
        self, settings: Settings, spawn: Callable[..., Proc], db: asyncpg.Pool, camera: FakeCamera
    ) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        user = f"e2e-cam-{uuid4().hex[:6]}"
        headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
        spawn(["api", "--port", str(port)], process_env(settings))
        workers = [
            spawn(["worker", "camera"], process_env(settings), name=f"cam{i}") for i in range(2)
        ]
        await wait_for(lambda: api_ready(base), what="the API")

        async def one_leader_one_standby() -> bool:
            standby = [w for w in workers if "camera_scheduler_standby" in events(w)]
            return len(leaders(workers)) == 1 and len(standby) == 1

        await wait_for(one_leader_one_standby, what="one leader and one standby", timeout_s=30)
        try:
            # Given a camera captured every second
            async with aiohttp.ClientSession(base, headers=headers) as http:
                body = {"snapshot_url": camera.url, "interval_s": INTERVAL_S, "enabled": True}
                async with http.put("/api/cameras/door", json=body) as resp:
                    assert resp.status == 200, await resp.text()

            await wait_for(completed_captures(db, user, 4), what="4 captures", timeout_s=20)
            # When the scheduler's holder is killed
            holder = leaders(workers)[0]
            survivor = next(w for w in workers if w is not holder)
            killed_at = time.monotonic()
            os.kill(holder.popen.pid, signal.SIGKILL)
            holder.popen.wait(timeout=10)
            before = await captures(db, user)

            # Then the other replica takes over within a few seconds and capture goes on
            async def taken_over() -> bool:
                return survivor in leaders(workers)

            await wait_for(taken_over, what="the survivor to take over", timeout_s=10)
            await wait_for(
                completed_captures(db, user, len(before) + 3), what="3 more captures", timeout_s=20
            )
        finally:
            await db.execute("UPDATE cameras SET enabled = false WHERE user_id = $1", user)

        async def settled() -> list[dict[str, Any]] | None:
            rows = await captures(db, user)
            terminal = ("completed", "failed", "cancelled")
            return rows if all(r["status"] in terminal for r in rows) else None

        rows = await wait_for(settled, what="every capture to end")
        slots = [r["slot_at"] for r in rows]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(slots)]
        # No slot doubled: every slot once, on the grid of the interval, before and after
        assert len(slots) == len(set(slots))
        assert all(g % INTERVAL_S == 0 for g in gaps), gaps
        # While the first holder lived, none skipped and each was created in its interval
        held = [r for r in rows if r["slot_at"] <= before[-1]["slot_at"]]
        assert {(b["slot_at"] - a["slot_at"]).total_seconds()
                for a, b in itertools.pairwise(held)} == {INTERVAL_S}  # fmt: skip
        assert all(0 <= (r["created_at"] - r["slot_at"]).total_seconds() < INTERVAL_S for r in held)
        # The takeover cost at most a few slots, and the new holder kept the interval too
        assert max(gaps) <= 5 * INTERVAL_S, gaps
        after = [s for s in slots if s > before[-1]["slot_at"]]
        assert len(after) >= 3
        assert {(b - a).total_seconds() for a, b in itertools.pairwise(after)} == {INTERVAL_S}
        # At the camera: never more fetches than slots (none doubled), and while the first
        # holder lived, one fetch per interval (give or take the window's two ends)
        assert sum(r["status"] == "completed" for r in rows) <= len(camera.requests) <= len(rows)
        early = [t for t in camera.requests if t < killed_at]
        span = early[-1] - early[0]
        assert abs(len(early) - (span / INTERVAL_S + 1)) <= 1.5, (len(early), span)

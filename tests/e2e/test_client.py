"""`taskfleet.client` against the real fleet (`taskfleet api` and `taskfleet worker chat` as
processes): a submission sent again after a dropped connection is one task; `events()` across
an API restart yields every event once and in order; `wait` returns when the task ends; the
listing, cancel, retry and the sync facade do what the contract says."""

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from taskfleet.client import Event, Taskfleet, TaskfleetSync
from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for
from tests.e2e.test_chat_e2e import api_ready

# Slow enough that a restart of the API falls in the middle of a reply.
WORD_DELAY_MS = 120
LONG_TEXT = " ".join(f"word{i}" for i in range(30))


@dataclass
class Fleet:
    base: str
    port: int
    env: dict[str, str]
    spawn: Callable[..., Proc]
    api: Proc

    async def restart_api(self) -> None:
        """SIGTERM (every socket closed with 1001), then a new API on the same port."""
        self.api.popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.api.popen.wait, 30)
        self.api = self.spawn(["api", "--port", str(self.port)], self.env, name="api-again")
        await wait_for(lambda: api_ready(self.base), what="the new API to be ready")


@pytest.fixture
async def fleet(settings: Settings, spawn: Callable[..., Proc]) -> Fleet:
    port = free_port()
    env = process_env(settings, SCRIPTED_DELAY_MS=WORD_DELAY_MS)
    api = spawn(["api", "--port", str(port)], env)
    spawn(["worker", "chat"], env)
    base = f"http://127.0.0.1:{port}"
    await wait_for(lambda: api_ready(base), what="the API to be ready")
    return Fleet(base, port, env, spawn, api)


def token(user: str) -> str:
    return issue_token(JWT_SECRET, user)


@pytest.fixture
async def dropping_proxy(fleet: Fleet) -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An HTTP proxy to the API that forwards the first POST and drops the connection
    instead of answering it, as a network may; it records every POST's headers."""
    posts: list[dict[str, str]] = []
    async with aiohttp.ClientSession() as upstream:

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            async with upstream.request(
                request.method, fleet.base + request.path_qs, data=body, headers=headers
            ) as resp:
                answer = await resp.read()
            if request.method == "POST":
                posts.append(dict(request.headers))
                if len(posts) == 1 and request.transport is not None:
                    request.transport.abort()  # the API acted; its answer is lost
            return web.Response(body=answer, status=resp.status, headers=resp.headers)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}", posts
        finally:
            await runner.cleanup()


async def test_a_submission_sent_again_after_a_dropped_connection_is_one_task(
    fleet: Fleet, dropping_proxy: tuple[str, list[dict[str, str]]], db: asyncpg.Pool
) -> None:
    url, posts = dropping_proxy
    user = f"drop-{uuid4().hex[:6]}"
    async with Taskfleet(url, token(user)) as tf:
        accepted = await tf.submit_chat("c1", "hello once")
        task = await tf.wait(accepted.task_id, timeout_s=30)
    assert len(posts) == 2  # the first was dropped, the client sent it again
    assert posts[0]["Idempotency-Key"] == posts[1]["Idempotency-Key"]
    rows = await db.fetch("SELECT id FROM tasks WHERE user_id = $1", user)
    assert [r["id"] for r in rows] == [accepted.task_id]
    assert task.status == "completed"
    assert task.output["reply"] == "You said: hello once"


async def test_events_across_an_api_restart_are_each_yielded_once_in_order(
    fleet: Fleet,
) -> None:
    user = f"ev-{uuid4().hex[:6]}"
    seen: list[Event] = []
    restarted_at = 0
    async with Taskfleet(fleet.base, token(user)) as tf:
        stream = tf.events()
        accepted = await tf.submit_chat("c1", LONG_TEXT)
        async with asyncio.timeout(60):
            async for event in stream:
                if event.task_id != accepted.task_id:
                    continue
                seen.append(event)
                deltas = [e for e in seen if e.type == "message.delta"]
                if not restarted_at and len(deltas) >= 3:
                    await fleet.restart_api()  # the socket is closed under the client
                    restarted_at = len(seen)
                if event.terminal:
                    break
    assert restarted_at
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs)
    assert len({(e.type, e.seq) for e in seen}) == len(seen)  # none twice
    before, after = seen[:restarted_at], seen[restarted_at:]
    # The new replica never saw this task's events: it resumed the client from the database,
    # with the reply as last saved (unless the task had ended by then: its final event).
    assert after[0].type == "message.snapshot" or after[0].terminal
    final = seen[-1].task or {}
    assert final["status"] == "completed"
    reply = f"You said: {LONG_TEXT}"
    assert final["output"]["reply"] == reply
    # From one replica the deltas have no gap and are the reply's beginning.
    assert reply.startswith(_reply(before))
    assert len(_reply(before)) >= len("You said: word0 ")  # the three deltas


def _reply(events: list[Event]) -> str:
    """The reply as a client rebuilds it: deltas placed by offset (with no gap)."""
    text = ""
    for event in events:
        if event.type == "message.delta" and event.offset is not None:
            assert event.offset <= len(text), "a gap: a delta beyond the text so far"
            text = text[: event.offset] + (event.delta or "")
    return text


async def test_wait_list_cancel_and_retry(fleet: Fleet) -> None:
    user = f"ops-{uuid4().hex[:6]}"
    async with Taskfleet(fleet.base, token(user)) as tf:
        ids = [
            (await tf.submit_chat("c1", f"m{i}", metadata={"batch": "b1"})).task_id
            for i in range(3)
        ]
        done = await tf.wait(ids[0])
        assert done.terminal
        assert done.status == "completed"
        assert done.metadata == {"batch": "b1"}
        listed = [t.id async for t in tf.list(metadata={"batch": "b1"}, page_size=2)]
        assert listed == ids[::-1]
        slow = (await tf.submit_chat("c2", LONG_TEXT)).task_id
        await wait_for(lambda: _status_is(tf, slow, "processing"), what="the task to run")
        assert (await tf.cancel(slow)).cancel_requested
        assert (await tf.wait(slow)).status == "cancelled"
        assert (await tf.retry(slow)).status in ("queued", "processing")
        assert (await tf.wait(slow)).status == "completed"
        active = [t.id async for t in tf.list(status=["active"])]
        assert slow not in active
        later = await tf.submit_chat("c3", "later", delay_s=1)
        assert later.status == "scheduled"
        ran = await tf.wait(later.task_id)
        assert ran.status == "completed"
        assert ran.run_at is not None


async def _status_is(tf: Taskfleet, task_id: Any, status: str) -> bool:
    return (await tf.get(task_id)).status == status


async def test_the_sync_facade_for_scripts(fleet: Fleet) -> None:
    user = f"sync-{uuid4().hex[:6]}"

    def script() -> tuple[str, list[str]]:
        with TaskfleetSync(fleet.base, token(user)) as tf:
            accepted = tf.submit_chat("c1", "from a script", idempotency_key="k1")
            again = tf.submit_chat("c1", "from a script", idempotency_key="k1")
            assert again.task_id == accepted.task_id
            task = tf.wait(accepted.task_id, timeout_s=30)
            return task.output["reply"], [str(t.id) for t in tf.list()]

    reply, listed = await asyncio.to_thread(script)
    assert reply == "You said: from a script"
    assert len(listed) == 1

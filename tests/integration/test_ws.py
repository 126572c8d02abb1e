"""Live updates over the WebSocket: snapshot, progress, deltas, completion, isolation, resume."""

import asyncio
from typing import Any

import aiohttp

from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api, new_user, submit, token
from tests.integration.conftest import ConsumerFactory, wait_status


async def next_json(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 10) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout_s)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = message.json()
    return data


async def events_until_done(
    ws: aiohttp.ClientWebSocketResponse, task_id: str, timeout_s: float = 15
) -> list[dict[str, Any]]:
    """Every event until the task's terminal task.updated."""
    seen = []
    while True:
        event = await next_json(ws, timeout_s)
        seen.append(event)
        task = event.get("task") or {}
        if task.get("id") == task_id and task.get("status") in ("completed", "failed", "cancelled"):
            return seen


def progress_handler(words: int = 6, pause_s: float = 0.06) -> Any:
    async def handle(ctx: TaskContext) -> TaskResult:
        await ctx.progress(0.1, "thinking", "reading the chat")
        reply = []
        for i in range(words):
            await asyncio.sleep(pause_s)
            reply.append(f"w{i} ")
            await ctx.delta(f"w{i} ")
            await ctx.progress((i + 1) / words, "writing")
        text = "".join(reply)
        return TaskResult({"reply": text}, reply=text)

    return handle


class TestLiveUpdates:
    async def test_client_sees_snapshot_progress_deltas_and_completion_of_its_own_task_only(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        alice, bob = new_user("alice"), new_user("bob")
        async with api(kernel) as client:
            queued_before = await submit(client, alice, "already waiting")  # in the snapshot
            async with (
                client.ws_connect(f"/ws/tasks?token={token(alice)}") as ws_a,
                client.ws_connect(f"/ws/tasks?token={token(bob)}") as ws_b,
            ):
                snap_a, snap_b = await next_json(ws_a), await next_json(ws_b)
                assert snap_a["type"] == "snapshot"
                assert [t["id"] for t in snap_a["tasks"]] == [queued_before["task_id"]]
                assert snap_b == {"type": "snapshot", "tasks": []}
                await consume(progress_handler())
                mine = await submit(client, alice, "tell me")
                theirs = await submit(client, bob, "tell him")
                seen_a = await events_until_done(ws_a, mine["task_id"])
                seen_b = await events_until_done(ws_b, theirs["task_id"])
        assert {e["task_id"] for e in seen_b} == {theirs["task_id"]}
        assert theirs["task_id"] not in {e["task_id"] for e in seen_a}
        mine_events = [e for e in seen_a if e["task_id"] == mine["task_id"]]
        kinds = [(e["type"], (e.get("task") or {}).get("status")) for e in mine_events]
        assert kinds[0] == ("task.updated", "processing")
        assert kinds[-1] == ("task.updated", "completed")
        stages = [e["task"].get("stage") for e in mine_events if e["type"] == "task.updated"]
        assert "thinking" in stages
        assert "writing" in stages
        deltas = [e for e in mine_events if e["type"] == "message.delta"]
        assert "".join(d["delta"] for d in deltas) == "w0 w1 w2 w3 w4 w5 "
        assert all(d["message_id"] == mine["message_id"] for d in deltas)
        seqs = [e["seq"] for e in mine_events]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)
        assert all("user_id" not in e for e in seen_a)

    async def test_reconnect_with_since_resumes_the_reply_where_the_client_lost_it(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user = new_user("carol")
        await consume(progress_handler(words=12, pause_s=0.1))
        async with api(kernel) as client:
            async with client.ws_connect(f"/ws/tasks?token={token(user)}") as ws:
                await next_json(ws)  # snapshot
                accepted = await submit(client, user, "long answer please")
                got: list[dict[str, Any]] = []
                while sum(e["type"] == "message.delta" for e in got) < 3:
                    got.append(await next_json(ws))
            # The client drops here, mid-reply; it comes back with the last seq it saw.
            await asyncio.sleep(0.3)  # let the reply go on while nobody listens
            last = got[-1]["seq"]
            url = f"/ws/tasks?token={token(user)}&since={accepted['task_id']}:{last}"
            async with client.ws_connect(url) as ws:
                snapshot = await next_json(ws)
                assert snapshot["type"] == "snapshot"
                rest = await events_until_done(ws, accepted["task_id"])
        assert all(e["seq"] > last for e in rest)
        text = _apply(got + rest)
        assert text == "".join(f"w{i} " for i in range(12))

    async def test_since_on_a_replica_that_missed_the_events_falls_back_to_the_database(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user = new_user("dave")
        started = asyncio.Event()
        release = asyncio.Event()

        async def stuck(ctx: TaskContext) -> TaskResult:
            await ctx.delta("partial ")
            await ctx.partial({"reply": "partial "}, reply="partial ")
            started.set()
            await release.wait()
            return TaskResult({"reply": "partial done"}, reply="partial done")

        await consume(stuck)
        async with api(kernel) as first:
            accepted = await submit(first, user, "hi")
            await asyncio.wait_for(started.wait(), 10)
        # A new replica (fresh hub): it never saw this task's events
        async with api(kernel) as second:
            url = f"/ws/tasks?token={token(user)}&since={accepted['task_id']}:1"
            async with second.ws_connect(url) as ws:
                await next_json(ws)  # snapshot
                update, message = await next_json(ws), await next_json(ws)
                assert update["type"] == "task.updated"
                assert update["task"]["status"] == "processing"
                assert message["type"] == "message.snapshot"
                assert message["content"] == "partial "
                assert message["status"] == "streaming"
                release.set()
                rest = await events_until_done(ws, accepted["task_id"])
        assert rest[-1]["task"]["output"] == {"reply": "partial done"}
        await wait_status(kernel, accepted["task_id"], "completed")

    async def test_a_client_within_a_reply_gets_the_reply_as_saved_from_a_new_replica(
        self, kernel: Kernel, consume: ConsumerFactory
    ) -> None:
        user = new_user("erin")
        started, release = asyncio.Event(), asyncio.Event()

        async def stuck(ctx: TaskContext) -> TaskResult:
            await ctx.delta("one ")
            await ctx.delta("two ")
            await ctx.partial({"reply": "one two "}, reply="one two ")
            started.set()
            await release.wait()
            return TaskResult({"reply": "one two three"}, reply="one two three")

        await consume(stuck)
        async with api(kernel) as first:
            async with first.ws_connect(f"/ws/tasks?token={token(user)}") as ws:
                await next_json(ws)  # snapshot
                accepted = await submit(first, user, "hi")
                deltas: list[dict[str, Any]] = []
                while len(deltas) < 2:  # both were published: no later replica gets them
                    event = await next_json(ws)
                    deltas += [event] if event["type"] == "message.delta" else []
            await asyncio.wait_for(started.wait(), 10)
        # The client kept the first delta only, then its replica went.
        since = deltas[0]["seq"]
        async with api(kernel) as second:
            url = f"/ws/tasks?token={token(user)}&since={accepted['task_id']}:{since}"
            async with second.ws_connect(url) as ws:
                await next_json(ws)  # snapshot
                message = await next_json(ws)
                assert message["type"] == "message.snapshot"
                assert message["content"] == "one two "
                assert message["seq"] == since
                release.set()
                rest = await events_until_done(ws, accepted["task_id"])
        assert rest[-1]["task"]["output"] == {"reply": "one two three"}

    async def test_bad_token_and_bad_since_are_refused(self, kernel: Kernel) -> None:
        async with api(kernel) as client:
            resp = await client.get("/ws/tasks?token=nope")
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "unauthorized"
            resp = await client.get(f"/ws/tasks?token={token('x')}&since=garbage")
            assert resp.status == 400


def _apply(events: list[dict[str, Any]]) -> str:
    """Rebuild the reply from deltas by offset, as a client does: idempotent and ordered."""
    text = ""
    for e in sorted((e for e in events if e["type"] == "message.delta"), key=lambda e: e["seq"]):
        text = text[: e["offset"]] + e["delta"] + text[e["offset"] + len(e["delta"]) :]
    return text

"""Tracing through real processes, exported over OTLP/HTTP to a real receiver: one chat message
that calls a tool, posted to the API, is one trace from the API's request span through the
chat worker's delivery, claim, run and model spans to the tool worker's delivery of the child
task, and back to the chat worker for the resume the outbox relay publishes
(tests/unit/test_tracing.py: off without the OTEL_* variables; tests/e2e/test_tracing_relay.py:
a publish deferred to the relay while the API has no broker, a retry)."""

import asyncio
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import pytest

from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for
from tests.e2e.conftest import wait_task
from tests.llm_server import Behaviour, Calls, FakeLLM, Text, is_memory_request
from tests.otlp_server import OtlpReceiver, ReceivedSpan

SERVER, CLIENT, CONSUMER = 2, 3, 5  # SpanKind in the OTLP protobuf


def respond(body: dict[str, Any]) -> Behaviour:
    if is_memory_request(body):
        return Text("[]")
    if any(m.get("role") == "tool" for m in body["messages"]):
        return Text("It is 42.")
    return Calls([("calculator", '{"expression": "6*7"}')])


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    server = await FakeLLM(respond).start()
    yield server
    await server.stop()


async def post_chat(port: int, content: str) -> str:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, 'traced')}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(
            f"http://127.0.0.1:{port}/api/chat/stream",
            json={"chat_id": "traced", "content": content},
        ) as resp,
    ):
        assert resp.status == 202, await resp.text()
        return str((await resp.json())["task_id"])


async def test_one_chat_with_a_tool_is_one_trace_across_the_processes(
    settings: Settings,
    spawn: Callable[..., Proc],
    db: asyncpg.Pool,
    receiver: OtlpReceiver,
    llm: FakeLLM,
) -> None:
    port = free_port()
    env = process_env(
        settings,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        LLM_BASE_URL=llm.url,
        LLM_MODEL="traced-model",
    )
    api = spawn(["api", "--port", str(port)], env, name="api")
    chat = spawn(["worker", "chat"], env, name="chat")
    tool = spawn(["worker", "tool"], env, name="tool")
    for proc, event in ((api, "api_started"), (chat, "worker_started"), (tool, "worker_started")):
        await wait_for(functools.partial(_said, proc, event), what=f"{proc.name} to start")
    try:
        task_id = await post_chat(port, "what is 6*7?")
        await wait_task(db, UUID(task_id), "completed", timeout_s=60)

        def by_service(name: str) -> list[ReceivedSpan]:
            return [s for s in receiver.spans if s.service == name]

        async def exported() -> bool:  # the batches go out every 100 ms
            names = {(s.service, s.name) for s in receiver.spans}
            return (
                {
                    ("taskfleet-api", "POST /api/chat/stream"),
                    ("taskfleet-chat-worker", "chat traced-model"),
                }
                <= names
                and _delivered_under_request(by_service)
                and _tool_ran(by_service)
            )

        await wait_for(exported, what="the spans of the three processes", timeout_s=30)
        [request] = [s for s in by_service("taskfleet-api") if s.name == "POST /api/chat/stream"]
        assert (request.kind, request.attributes["http.response.status_code"]) == (SERVER, 202)
        # The chat worker's first delivery continues the request's trace, under its span.
        deliveries = [
            s for s in by_service("taskfleet-chat-worker") if s.name == "process chat_tasks"
        ]
        first = next(s for s in deliveries if s.parent_id == request.span_id)
        assert (first.trace_id, first.kind) == (request.trace_id, CONSUMER)
        assert first.attributes["taskfleet.task_id"] == task_id
        spans = {s.span_id: s for s in receiver.spans}
        claim = next(
            s for s in spans.values() if s.name == "claim" and s.parent_id == first.span_id
        )
        run = next(s for s in spans.values() if s.name == "run" and s.parent_id == first.span_id)
        assert claim.trace_id == run.trace_id == request.trace_id
        # The model call, under the run, with its first token and its tokens.
        model = next(
            s
            for s in spans.values()
            if s.name == "chat traced-model" and s.parent_id == run.span_id
        )
        assert (model.trace_id, model.kind) == (request.trace_id, CLIENT)
        assert "first_token" in model.events
        # The fake counts a word of the request a token in, a chunk a token out.
        assert int(str(model.attributes["gen_ai.usage.input_tokens"])) > 3
        assert int(str(model.attributes["gen_ai.usage.output_tokens"])) >= 1
        # The tool's child task, delivered to the tool worker within the same trace, under the run
        # that made it (a second copy the outbox relay may publish under load carries it too).
        children = [
            s for s in by_service("taskfleet-tool-worker") if s.name == "process tool_executions"
        ]
        assert (request.trace_id, run.span_id) in {(c.trace_id, c.parent_id) for c in children}
        # ... and the child's row kept that context, for the messages the relay may send it.
        [kept] = await db.fetch("SELECT traceparent FROM tasks WHERE parent_id = $1", UUID(task_id))
        assert str(kept["traceparent"]).startswith(f"00-{request.trace_id}-{run.span_id}-")

        # The chat's resume once its tool ended: published by the outbox relay from the task's
        # row, which kept the request's trace context (migrations/0029), under its span too.
        async def resumed() -> ReceivedSpan | None:
            return next((s for s in receiver.spans if s.name == "process chat_tasks"
                         and s.attributes.get("taskfleet.task_id") == task_id
                         and s.attributes.get("taskfleet.attempt") == 2), None)  # fmt: skip

        resume = await wait_for(resumed, what="the resume's delivery", timeout_s=30)
        assert (resume.trace_id, resume.parent_id) == (request.trace_id, request.span_id)
        # PostgreSQL: the claim's shared statement as an event of each caller's claim, the run's
        # statements each a span of their own, and the tool's call under the tool worker's run.
        assert "claim (batched)" in claim.events
        statements = [s for s in spans.values() if s.parent_id == run.span_id
                      and s.attributes.get("db.system") == "postgresql"]  # fmt: skip
        assert {"tf_wait_for"} <= {s.name for s in statements}
        assert all(s.kind == CLIENT and s.attributes["db.statement"] for s in statements)
        # (A tool task another test left in the shared namespace may run here too, in its own
        # trace: this chat's call is the one in the request's.)
        [call] = [s for s in by_service("taskfleet-tool-worker")
                  if s.name == "tool calculator" and s.trace_id == request.trace_id]  # fmt: skip
        assert call.attributes["gen_ai.tool.name"] == "calculator"
        # And the log lines written in those spans carry their ids.
        lines = [json.loads(line) for line in chat.output().splitlines()]
        traced = [line for line in lines if line.get("trace_id") == request.trace_id]
        assert traced
        assert all(len(str(line["span_id"])) == 16 for line in traced)
    finally:  # even when an assertion failed: the next test shares the namespace
        await _leave_nothing_behind(db, (api, chat, tool))


async def _leave_nothing_behind(db: asyncpg.Pool, procs: tuple[Proc, ...]) -> None:
    """The next test shares the database and namespace: no outbox row left for its relay to
    publish, and each process stopped after settling what it holds."""

    async def drained() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM outbox") == 0)

    await wait_for(drained, what="the outbox to be empty", timeout_s=30)
    for proc in procs:
        proc.popen.terminate()
    for proc in procs:
        await asyncio.to_thread(proc.popen.wait, 30)


async def _said(proc: Proc, event: str) -> bool:
    return f'"{event}"' in proc.output()


def _tool_ran(by_service: Callable[[str], list[ReceivedSpan]]) -> bool:
    """Whether the tool worker's spans of this chat's call (in the request's trace) are
    exported yet: those of a tool task another test left in the shared namespace may come
    first, and would otherwise satisfy the wait."""
    traces = {s.trace_id for s in by_service("taskfleet-api") if s.name == "POST /api/chat/stream"}
    names = {s.name for s in by_service("taskfleet-tool-worker") if s.trace_id in traces}
    return {"process tool_executions", "tool calculator"} <= names


def _delivered_under_request(by_service: Callable[[str], list[ReceivedSpan]]) -> bool:
    """Whether the chat worker's delivery span under the request's is exported yet: each
    process exports on its own clock, so the tool's spans may arrive before it."""
    requests = {s.span_id for s in by_service("taskfleet-api") if s.name == "POST /api/chat/stream"}
    return any(
        s.parent_id in requests
        for s in by_service("taskfleet-chat-worker")
        if s.name == "process chat_tasks"
    )

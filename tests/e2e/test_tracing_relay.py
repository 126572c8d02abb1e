"""Tracing through the outbox relay, with real processes and a real OTLP/HTTP receiver: the
messages the relay publishes long after the request (a first message deferred while the API
had no broker, a retry after a failed attempt) carry the trace context their task kept, so the
worker's spans are in the API request's trace as a message published at once would put them
(tests/e2e/test_tracing.py: one chat with a tool, its resume after the tool included). A chat
message a backend publishes straight to the queue keeps the backend's trace the same way."""

import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import aio_pika
import aiohttp
import asyncpg
import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.ids import uuid7
from taskfleet.core.messages import TaskMessage
from taskfleet.core.settings import Settings
from tests.chaos.infra import SilentProxy, port_of, via_port
from tests.conftest import Proc, free_port, process_env, wait_for
from tests.e2e.conftest import wait_task
from tests.e2e.test_tracing import _leave_nothing_behind, _said, post_chat
from tests.llm_server import Behaviour, FakeLLM, Status, Text, is_memory_request
from tests.otlp_server import OtlpReceiver, ReceivedSpan

API_SPAN, DELIVERY = "POST /api/chat/stream", "process chat_tasks"


def model(failures: int) -> Callable[[dict[str, Any]], Behaviour]:
    """The model: a 500 to the first `failures` chat requests, then an answer (memory
    extraction: nothing to keep)."""
    chats: list[dict[str, Any]] = []

    def respond(body: dict[str, Any]) -> Behaviour:
        if is_memory_request(body):
            return Text("[]")
        chats.append(body)
        return Status(500) if len(chats) <= failures else Text("Here I am.")

    return respond


@pytest.fixture
async def llm(request: pytest.FixtureRequest) -> AsyncIterator[FakeLLM]:
    server = await FakeLLM(model(getattr(request, "param", 0))).start()
    yield server
    await server.stop()


@pytest.fixture
async def amqp_proxy(settings: Settings) -> AsyncIterator[SilentProxy]:
    proxy = SilentProxy(port_of(settings.amqp_url))
    await proxy.start()
    yield proxy
    await proxy.close()


def traced_env(settings: Settings, receiver: OtlpReceiver, llm: FakeLLM, **extra: Any) -> Any:
    return process_env(
        settings,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
        LLM_BASE_URL=llm.url,
        LLM_MODEL="traced-model",
        **extra,
    )


async def started(*procs: Proc) -> None:
    for proc in procs:
        event = "api_started" if proc.name == "api" else "worker_started"
        await wait_for(functools.partial(_said, proc, event), what=f"{proc.name} to start")


async def trace_of(
    receiver: OtlpReceiver, task_id: str, attempts: int
) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    """The API's request span (the one request of the test's API) and the chat worker's
    delivery of each attempt of `task_id` (only this task's: the namespace is shared), once
    exported (the batches go out every 100 ms)."""

    async def exported() -> tuple[ReceivedSpan, list[ReceivedSpan]] | None:
        requests = [s for s in receiver.spans if s.name == API_SPAN]
        deliveries = deliveries_of(receiver, task_id, attempts)
        if len(requests) != 1 or deliveries is None:
            return None
        return requests[0], deliveries

    found: tuple[ReceivedSpan, list[ReceivedSpan]] = await wait_for(
        exported, what="the request's span and each attempt's delivery", timeout_s=30
    )
    return found


def deliveries_of(receiver: OtlpReceiver, task_id: str, attempts: int) -> list[ReceivedSpan] | None:
    """The chat worker's delivery span of each attempt of `task_id`, once all are exported."""
    by_attempt: dict[object, ReceivedSpan] = {}
    for s in receiver.spans:
        if s.name == DELIVERY and s.attributes.get("taskfleet.task_id") == task_id:
            by_attempt.setdefault(s.attributes["taskfleet.attempt"], s)
    wanted = [by_attempt.get(n) for n in range(1, attempts + 1)]
    return None if None in wanted else [d for d in wanted if d is not None]


async def broker_connected(port: int) -> bool:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/readyz") as resp,
    ):
        return bool((await resp.json())["broker"]["connected"])


def deferred(api: Proc, task_id: str) -> bool:
    """Whether the API left the task's first message to the relay (its log says so)."""
    for line in api.output().splitlines():
        if '"publish_deferred_to_relay"' in line and json.loads(line).get("task_id") == task_id:
            return True
    return False


async def test_a_chat_deferred_to_the_relay_while_the_api_has_no_broker_is_in_its_trace(
    settings: Settings,
    spawn: Callable[..., Proc],
    db: asyncpg.Pool,
    receiver: OtlpReceiver,
    llm: FakeLLM,
    amqp_proxy: SilentProxy,
) -> None:
    port = free_port()
    # The API reaches RabbitMQ through the proxy only; the worker (and its relay) directly.
    cut_off = via_port(settings.amqp_url, amqp_proxy.port)
    api = spawn(["api", "--port", str(port)],
                traced_env(settings, receiver, llm, AMQP_URL=cut_off), name="api")  # fmt: skip
    chat = spawn(["worker", "chat"], traced_env(settings, receiver, llm), name="chat")
    await started(api, chat)
    try:
        amqp_proxy.cut()  # the API loses its broker; it keeps accepting (the outbox)

        async def broker_lost() -> bool:
            return not await broker_connected(port)

        await wait_for(broker_lost, what="the API to lose its broker")
        task_id = await post_chat(port, "are you there?")

        async def left_to_the_relay() -> bool:
            return deferred(api, task_id)

        await wait_for(left_to_the_relay, what="the API to leave its publish to the relay")
        await wait_task(db, UUID(task_id), "completed", timeout_s=60)
        # Only the worker's relay could publish it (the API has no broker): yet its delivery
        # continues the request's trace, under its span, as a message published at once does.
        request, [delivery] = await trace_of(receiver, task_id, attempts=1)
        assert (request.service, delivery.service) == ("taskfleet-api", "taskfleet-chat-worker")
        assert (delivery.trace_id, delivery.parent_id) == (request.trace_id, request.span_id)
        spans = {s.span_id: s for s in receiver.spans if s.trace_id == request.trace_id}
        assert {"claim", "run"} <= {s.name for s in spans.values()
                                    if s.parent_id == delivery.span_id}  # fmt: skip
    finally:
        amqp_proxy.mend()  # the API settles and stops as usual
        await _leave_nothing_behind(db, (api, chat))


@pytest.mark.parametrize("llm", [1], indirect=True)  # the model's first answer is a 500
async def test_a_retry_the_relay_publishes_is_in_the_trace_of_the_first_attempt(
    settings: Settings,
    spawn: Callable[..., Proc],
    db: asyncpg.Pool,
    receiver: OtlpReceiver,
    llm: FakeLLM,
) -> None:
    port = free_port()
    api = spawn(["api", "--port", str(port)], traced_env(settings, receiver, llm), name="api")
    # One HTTP attempt per model call: the 500 fails the task's attempt (retryably).
    chat = spawn(["worker", "chat"], traced_env(settings, receiver, llm, LLM_MAX_ATTEMPTS=1),
                 name="chat")  # fmt: skip
    await started(api, chat)
    try:
        task_id = await post_chat(port, "are you there?")
        done = await wait_task(db, UUID(task_id), "completed", timeout_s=60)
        assert done["attempts"] == 2
        # The first attempt's message went out at once; the retry's, after its backoff, by
        # the relay from the task's row: both deliveries under the request's span.
        request, deliveries = await trace_of(receiver, task_id, attempts=2)
        for delivery in deliveries:
            assert (delivery.trace_id, delivery.parent_id) == (request.trace_id, request.span_id)
    finally:
        await _leave_nothing_behind(db, (api, chat))


@pytest.mark.parametrize("llm", [1], indirect=True)  # the model's first answer is a 500
async def test_a_retry_of_a_message_a_backend_published_is_in_the_backend_s_trace(
    settings: Settings,
    spawn: Callable[..., Proc],
    db: asyncpg.Pool,
    receiver: OtlpReceiver,
    llm: FakeLLM,
) -> None:
    """No request made this task: the claim that creates its row keeps the message's
    traceparent, and the relay's retry carries it as the API's tasks' do."""
    chat = spawn(["worker", "chat"], traced_env(settings, receiver, llm, LLM_MAX_ATTEMPTS=1),
                 name="chat")  # fmt: skip
    await started(chat)
    backend_trace, backend_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    msg = TaskMessage(task_id=uuid7(), type=TaskType.CHAT, user_id="tracy", chat_id="direct",
                      payload={"content": "are you there?"})  # fmt: skip
    try:
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.default_exchange.publish(
                aio_pika.Message(msg.dumps(), message_id=str(msg.task_id),
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                 headers={"traceparent": f"00-{backend_trace}-{backend_span}-01"}),
                routing_key=settings.queue("chat_tasks"),
            )  # fmt: skip
        done = await wait_task(db, msg.task_id, "completed", timeout_s=60)
        assert done["attempts"] == 2

        async def both_deliveries() -> list[ReceivedSpan] | None:
            return deliveries_of(receiver, str(msg.task_id), attempts=2)

        deliveries = await wait_for(both_deliveries, what="both attempts' deliveries")
        for delivery in deliveries:
            assert (delivery.trace_id, delivery.parent_id) == (backend_trace, backend_span)
    finally:
        await _leave_nothing_behind(db, (chat,))

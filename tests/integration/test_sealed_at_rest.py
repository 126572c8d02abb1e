"""Sensitive fields sealed at rest (docs/security.md), on the real PostgreSQL and RabbitMQ: a
tool argument the agent sends appears in plaintext in no row of any table and in no message
on the broker, while the tool itself gets it; memory facts are stored sealed, deduplicated by
their blind index and listed in the clear to their owner; `taskfleet rotate-key` moves every
sealed value to the current key."""

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from taskfleet.broker import nodes
from taskfleet.core.constants import EVENTS_EXCHANGE
from taskfleet.core.faults import Faults
from taskfleet.core.settings import Settings
from taskfleet.data.memories import list_memories, save_memories
from taskfleet.data.webhooks import SECRET_FIELD, seal_secret
from taskfleet.llm import prompts
from taskfleet.llm.scripted import ScriptedModel
from taskfleet.llm.types import ChatHistory, StreamItem, ToolCall, ToolSpec
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.crypto import Keyring, new_key
from taskfleet.store.migrate import migrate
from taskfleet.store.pool import create_pool, drop_database, with_database
from tests.conftest import process_env, wait_for
from tests.integration.agent_helpers import TOOL, chat_handler, revealed
from tests.integration.api_client import api, auth, new_user
from tests.integration.conftest import ConsumerFactory, chat_message, publish, wait_status
from tests.smtp_server import Inbox
from tool_worker.handlers import ToolWorker, handle_tool
from tool_worker.settings import ToolWorkerSettings
from tool_worker.tools import default_registry


class Mailer:
    """A model that emails `secret` in a tool call the user never typed, then says it is done
    without repeating it: any copy of the secret at rest can only come from the tool call."""

    name = "mailer"

    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def aclose(self) -> None:
        """Nothing to close."""

    async def stream(
        self, messages: ChatHistory, *, tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        if messages[0].get("content") == prompts.MEMORY_EXTRACTION:
            yield "[]"
        elif messages[-1].get("role") == "tool":
            yield "Done: the email is on its way."
        else:
            body = {"to": ["bob@example.com"], "subject": "Codes", "body": f"Use {self.secret}"}
            yield ToolCall(id="call_1", name="send_email", arguments=orjson.dumps(body).decode())


async def rows_containing(pool: asyncpg.Pool, needle: str) -> dict[str, int]:
    """Every table of the database, every row as text: where `needle` appears."""
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    found = {}
    for t in tables:
        name = t["table_name"]
        count = await pool.fetchval(
            f'SELECT count(*) FROM "{name}" t WHERE t::text LIKE $1', f"%{needle}%"
        )
        if count:
            found[name] = count
    return found


@pytest.fixture
async def events(kernel: Kernel) -> AsyncIterator[list[bytes]]:
    """Every event published on the events exchange while the test runs."""
    seen: list[bytes] = []
    connection = await nodes.connect(kernel.settings)
    channel = await connection.channel()
    exchange = await channel.get_exchange(kernel.settings.queue(EVENTS_EXCHANGE))
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="task.#")

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(message.body)

    await queue.consume(keep, no_ack=True)
    yield seen
    await connection.close()


async def test_a_sensitive_tool_argument_is_in_no_table_and_in_no_queued_message(
    kernel: Kernel, consume: ConsumerFactory, smtp: tuple[Inbox, str], events: list[bytes]
) -> None:
    inbox, smtp_url = smtp
    secret = f"SECRET-{uuid.uuid4().hex}"
    # Given the agent, whose model emails the secret, and no tool worker yet
    await consume(chat_handler(kernel, Mailer(secret), memory_extraction=False))
    user = new_user()
    msg = chat_message(user_id=user, content="Send Bob the codes, please.", chat_id="mail")
    await publish(kernel, msg)
    await wait_status(kernel, msg.task_id, "waiting")

    # Then the tool task's message waits in tool_executions: take it, read it, put it back
    assert kernel.broker.connection is not None
    channel = await kernel.broker.connection.channel()
    queue = await channel.get_queue(kernel.settings.queue(TOOL.name), ensure=False)
    queued = await wait_for(
        lambda: queue.get(no_ack=False, fail=False, timeout=5), what="the tool task's message"
    )
    body = queued.body
    await queued.nack(requeue=True)
    await channel.close()
    assert secret not in body.decode()
    payload = orjson.loads(body)["payload"]
    assert payload["name"] == "send_email"
    assert payload["arguments"]["$sealed"] == 1

    # When a tool worker (with the fake SMTP server) runs it and the chat task completes
    settings = ToolWorkerSettings.of(kernel.settings, smtp_url=smtp_url)
    worker = ToolWorker(
        registry=default_registry(settings), settings=settings, faults=Faults.parse("")
    )
    await consume(partial(handle_tool, worker=worker), spec=TOOL)
    done = await wait_status(kernel, msg.task_id, "completed")
    assert done["output"]["reply"] == "Done: the email is on its way."
    assert done["output"]["tool_calls"][0]["ok"] is True

    # Then the tool got the plaintext (so this test can fail) ...
    [email] = inbox.messages
    assert secret in email.decode()
    # ... but no row of any table holds it, nor any event the fleet published
    assert await rows_containing(kernel.pool, secret) == {}
    assert await wait_for(lambda: _has_completed(events, msg.task_id), what="the last event")
    assert [e for e in events if secret.encode() in e] == []
    # And the owner reads the arguments in the clear through the API
    child_id = await kernel.pool.fetchval("SELECT id FROM tasks WHERE parent_id = $1", msg.task_id)
    async with api(kernel) as client:
        response = await client.get(f"/api/tasks/{child_id}", headers=auth(user))
        child = await response.json()
        assert response.status == 200, child
        assert child["input"]["arguments"]["body"] == f"Use {secret}"
        assert child["output"]["result"]["to"] == ["bob@example.com"]
        other = await client.get(f"/api/tasks/{child_id}", headers=auth("mallory"))
        assert other.status == 404


async def _has_completed(events: list[bytes], task_id: uuid.UUID) -> bool:
    return any(f'"task_id":"{task_id}"'.encode() in e and b'"completed"' in e for e in events)


async def test_memory_facts_are_sealed_deduplicated_and_listed_in_the_clear(
    kernel: Kernel, consume: ConsumerFactory
) -> None:
    await consume(chat_handler(kernel, ScriptedModel()))
    user, name = new_user(), f"Zed{uuid.uuid4().hex[:12]}"

    async def say(text: str, chat: str) -> dict[str, Any]:
        msg = chat_message(user_id=user, content=text, chat_id=chat)
        await publish(kernel, msg)
        return await wait_status(kernel, msg.task_id, "completed")

    # The user's own words and the reply stay readable (they are what the chat shows) ...
    first = await say(f"my name is {name}", "m1")
    assert revealed(kernel, first)["output"]["memories"]["facts"] == [f"The user's name is {name}."]
    # ... but the memory and the task's copy of it are sealed
    assert await rows_containing(kernel.pool, name) == {"messages": 2, "tasks": 1}
    assert name not in orjson.dumps(first["output"]["memories"]).decode()
    row = await kernel.pool.fetchrow("SELECT fact, fact_key FROM memories WHERE user_id = $1", user)
    assert row["fact"].startswith('{"$sealed":1,"kid":"dev"')
    assert row["fact_key"].startswith("dev:")
    # The same fact spelt differently is not stored twice
    again = await say(f"My name is {name.upper()}!", "m2")
    assert revealed(kernel, again)["output"]["memories"]["saved"] == 0
    assert await kernel.pool.fetchval("SELECT count(*) FROM memories WHERE user_id = $1", user) == 1
    # And its owner reads it through the API
    async with api(kernel) as client:
        response = await client.get(f"/api/users/{user}/memories", headers=auth(user))
        body = await response.json()
        assert response.status == 200, body
        assert [m["fact"] for m in body["memories"]] == [f"The user's name is {name}."]


@pytest.fixture
async def fresh_db(settings: Settings) -> AsyncIterator[str]:
    """A database of its own: rotation touches every row, so none of the session's."""
    dsn = with_database(settings.database_url, f"taskfleet_rotate_{uuid.uuid4().hex[:8]}")
    await migrate(dsn)
    yield dsn
    await drop_database(dsn)


def rotate_key(settings: Settings, dsn: str, keys: str) -> subprocess.CompletedProcess[str]:
    env = process_env(settings, DATABASE_URL=dsn, ENCRYPTION_KEYS=keys)
    command = [sys.executable, "-m", "taskfleet_cli", "rotate-key", "--batch-size", "2"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_rotate_key_reseals_everything_under_the_current_key(
    settings: Settings, fresh_db: str
) -> None:
    k0, k1 = new_key("k0"), new_key("k1")
    old, both, new = Keyring.from_text(k0), Keyring.from_text(f"{k1},{k0}"), Keyring.from_text(k1)
    pool = await create_pool(fresh_db, size=2)
    try:
        # Given tasks, tool call records and memories sealed under k0
        ids = [uuid.uuid4() for _ in range(3)]
        for i, task_id in enumerate(ids):
            arguments = old.seal({"body": f"secret {i}"}, row=task_id, field="arguments")
            result = old.seal({"sent": i}, row=task_id, field="result")
            await pool.execute(
                "INSERT INTO tasks (id, type, user_id, input, output, max_attempts, status)"
                " VALUES ($1, 'tool_execution', 'u', $2, $3, 1, 'completed')",
                task_id,
                {"call_id": "c", "name": "send_email", "arguments": arguments},
                {"call_id": "c", "result": result},
            )
            await pool.execute(
                "INSERT INTO tool_calls (task_id, call_id, tool, state, result)"
                " VALUES ($1, 'c', 'send_email', 'succeeded', $2)",
                task_id,
                result,
            )
        assert await save_memories(pool, old, "u", ["I am Ann.", "I like tea."], None) == 2
        hook_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO webhook_endpoints (id, user_id, url, events, secret, previous_secret)"
            " VALUES ($1, 'u', 'https://example.com/h', '{task.failed}', $2, $3)",
            hook_id,
            seal_secret(old, hook_id, "whsec_c2VjcmV0"),
            seal_secret(old, hook_id, "whsec_b2xk"),
        )
        # When k1 becomes current, k0 still opens, and a fact saved under k0 still dedupes
        assert await save_memories(pool, both, "u", ["i am ann"], None) == 0

        # Then rotate-key re-seals every value and says so, table by table
        run = rotate_key(settings, fresh_db, f"{k1},{k0}")
        assert run.returncode == 0, run.stderr + run.stdout
        assert "current key 'k1'" in run.stdout
        assert "tasks: 6 re-sealed, 0 left" in run.stdout
        assert "tool_calls: 3 re-sealed, 0 left" in run.stdout
        assert "memories: 2 re-sealed, 0 left" in run.stdout
        assert "webhook_endpoints: 2 re-sealed, 0 left" in run.stdout
        # A second run has nothing to do
        again = rotate_key(settings, fresh_db, f"{k1},{k0}")
        assert "tasks: 0 re-sealed, 0 left" in again.stdout, again.stdout

        # And with k0 removed everything still opens
        for i, task_id in enumerate(ids):
            row = await pool.fetchrow("SELECT input, output FROM tasks WHERE id = $1", task_id)
            assert new.reveal(row["input"], row=task_id)["arguments"] == {"body": f"secret {i}"}
            assert new.reveal(row["output"], row=task_id)["result"] == {"sent": i}
            record = await pool.fetchval(
                "SELECT result FROM tool_calls WHERE task_id = $1", task_id
            )
            assert new.open(record, row=task_id, field="result") == {"sent": i}
        hook = await pool.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", hook_id)
        assert new.open(hook["secret"], row=hook_id, field=SECRET_FIELD) == "whsec_c2VjcmV0"
        assert new.open(hook["previous_secret"], row=hook_id, field=SECRET_FIELD) == "whsec_b2xk"
        facts = await list_memories(pool, new, "u", limit=10)
        assert sorted(m["fact"] for m in facts) == ["I am Ann.", "I like tea."]
        # ... and dedupe goes on under the new key
        assert await save_memories(pool, new, "u", ["I like tea"], None) == 0
        # Without k0 before the rotation, rotate-key would have said what it could not open
        assert "k0" not in str(await pool.fetch("SELECT fact_key FROM memories"))
    finally:
        await pool.close()

"""A sealed value under a key this process does not hold (a rolling restart with a new key)
is a retry, `unknown_key`; one that does not open for any other reason fails the task
(docs/security.md, "Rotating a key"). The handlers are driven up to their first read of a
sealed value: no database is reached before it."""

from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import pytest

from chat_worker.agent import Agent
from chat_worker.settings import ChatWorkerSettings
from taskfleet.core.errors import InvalidPayload, PermanentError, RetryableError, TaskError
from taskfleet.core.faults import Faults
from taskfleet.data.toolspecs import tool_specs
from taskfleet.llm.scripted import ScriptedModel
from taskfleet.path.context import TaskContext
from taskfleet.security.crypto import Keyring, new_key
from tool_worker.handlers import ToolWorker, handle_tool
from tool_worker.settings import ToolWorkerSettings
from tool_worker.tools import default_registry

OLD, NEW = new_key("old"), new_key("new")
# Processes that have not been given the new key yet
CHAT = ChatWorkerSettings.load(ENCRYPTION_KEYS=OLD)
TOOLS = ToolWorkerSettings.load(ENCRYPTION_KEYS=OLD)


def context(**fields: Any) -> TaskContext:
    return cast(TaskContext, SimpleNamespace(**fields))


async def resume_chat(checkpoint: Any, task_id: Any) -> TaskError:
    agent = Agent(model=ScriptedModel(), settings=CHAT, tools=tool_specs())
    with pytest.raises(TaskError) as caught:
        await agent.run(context(last_checkpoint=checkpoint, task_id=task_id), "calc: 2*21")
    return caught.value


async def run_tool(arguments: Any, task_id: Any) -> TaskError:
    worker = ToolWorker(default_registry(TOOLS), TOOLS, Faults.parse(""))
    ctx = context(input={"call_id": "c1", "name": "calculator", "arguments": arguments},
                  task_id=task_id)  # fmt: skip
    with pytest.raises(TaskError) as caught:
        await handle_tool(ctx, worker=worker)
    return caught.value


async def test_a_checkpoint_under_a_key_not_held_here_is_retried() -> None:
    task_id = uuid4()
    newer = Keyring.from_text(f"{NEW},{OLD}").seal({"v": 1}, row=task_id, field="checkpoint")
    error = await resume_chat(newer, task_id)
    assert isinstance(error, RetryableError)
    assert error.code == "unknown_key"
    assert "'new'" in str(error)


async def test_an_altered_or_moved_checkpoint_fails_for_good() -> None:
    task_id = uuid4()
    sealed = Keyring.from_text(OLD).seal({"v": 1}, row=task_id, field="checkpoint")
    altered = sealed | {"c": sealed["c"][:-4] + "AAAA"}
    for checkpoint, row in ((altered, task_id), (sealed, uuid4())):
        error = await resume_chat(checkpoint, row)
        assert isinstance(error, PermanentError)
        assert error.code == "unsealable"


async def test_tool_arguments_under_a_key_not_held_here_are_retried() -> None:
    task_id = uuid4()
    newer = Keyring.from_text(NEW).seal({"expression": "2*21"}, row=task_id, field="arguments")
    error = await run_tool(newer, task_id)
    assert isinstance(error, RetryableError)
    assert error.code == "unknown_key"


async def test_tool_arguments_moved_from_another_task_fail_for_good() -> None:
    other = uuid4()
    sealed = Keyring.from_text(OLD).seal({"expression": "2*21"}, row=other, field="arguments")
    error = await run_tool(sealed, uuid4())
    assert isinstance(error, InvalidPayload)
    assert error.code == "invalid_payload"


async def test_plain_tool_arguments_are_refused_in_production_and_run_elsewhere() -> None:
    production = ToolWorkerSettings.load(ENCRYPTION_KEYS=OLD, TASKFLEET_ENV="production")
    worker = ToolWorker(default_registry(production), production, Faults.parse(""))
    plain = {"call_id": "c1", "name": "calculator", "arguments": {"expression": "2*21"}}
    with pytest.raises(InvalidPayload, match="not sealed"):
        await handle_tool(context(input=plain, task_id=uuid4()), worker=worker)
    development = ToolWorker(default_registry(TOOLS), TOOLS, Faults.parse(""))
    done = await handle_tool(context(input=plain, task_id=uuid4(), user_id="u", db=None),
                             worker=development)  # fmt: skip
    assert done.output["name"] == "calculator"

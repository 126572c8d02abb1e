"""A sealed value under a key this process does not hold (a rolling restart with a new key)
is a retry, `unknown_key`; one that does not open for any other reason fails the task
(docs/security.md, "Rotating a key"). The kernel opens a task's sealed fields before its
handler runs (taskfleet.security.fields): its Sealer is driven here, no database reached."""

from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.errors import InvalidPayload, PermanentError, RetryableError, TaskError
from taskfleet.core.faults import Faults
from taskfleet.core.payloads import ToolPayload
from taskfleet.path.context import TaskContext
from taskfleet.security.crypto import Keyring, new_key
from taskfleet.security.fields import Sealer
from tool_worker.handlers import ToolWorker, handle_tool
from tool_worker.settings import ToolWorkerSettings
from tool_worker.tools import default_registry

OLD, NEW = new_key("old"), new_key("new")
# A process that has not been given the new key yet
SETTINGS = ToolWorkerSettings.load(ENCRYPTION_KEYS=OLD)


def context(**fields: Any) -> TaskContext:
    return cast(TaskContext, SimpleNamespace(**fields))


async def resume_chat(checkpoint: Any, task_id: Any) -> TaskError:
    with pytest.raises(TaskError) as caught:
        Sealer.from_settings(SETTINGS).open_checkpoint(TaskType.CHAT, task_id, checkpoint)
    return caught.value


def tool_call(arguments: Any) -> ToolPayload:
    return ToolPayload.parse({"call_id": "c1", "name": "calculator", "arguments": arguments})


async def run_tool(arguments: Any, task_id: Any) -> TaskError:
    with pytest.raises(TaskError) as caught:
        Sealer.from_settings(SETTINGS).open_payload(TaskType.TOOL, task_id, tool_call(arguments))
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
    plain = tool_call({"expression": "2*21"})
    with pytest.raises(InvalidPayload, match=r"^arguments: not sealed"):
        Sealer.from_settings(production).open_payload(TaskType.TOOL, uuid4(), plain)
    task_id = uuid4()
    opened = Sealer.from_settings(SETTINGS).open_payload(TaskType.TOOL, task_id, plain)
    development = ToolWorker(default_registry(SETTINGS), SETTINGS, Faults.parse(""))
    done = await handle_tool(
        context(payload=opened, task_id=task_id, user_id="u", db=None), worker=development
    )
    assert done.output == {
        "call_id": "c1",
        "name": "calculator",
        "result": {"expression": "2*21", "result": 42},
    }

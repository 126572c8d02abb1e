"""taskfleet.security.fields: the kernel seals a task's sensitive fields as the handlers did
before it (same labels, bound to the same rows, so values already stored still open) and
leaves every other field, and every other task type's, as it is."""

from typing import Any
from uuid import uuid4

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.errors import InvalidPayload
from taskfleet.core.payloads import ToolPayload
from taskfleet.security.crypto import Keyring, is_sealed, new_key
from taskfleet.security.fields import Sealer

KEYS = Keyring.from_text(new_key("k1"))
SEALER = Sealer(KEYS)


def test_a_chat_checkpoint_is_sealed_whole_and_opens_as_before() -> None:
    task_id, state = uuid4(), {"v": 1, "turns": [{"role": "tool", "content": "secret"}]}
    sealed = SEALER.seal_checkpoint(TaskType.CHAT, task_id, state)
    assert KEYS.open(sealed, row=task_id, field="checkpoint") == state
    # One sealed by the agent before the kernel did, and one never sealed, both open
    earlier = KEYS.seal(state, row=task_id, field="checkpoint")
    assert SEALER.open_checkpoint(TaskType.CHAT, task_id, earlier) == state
    assert SEALER.open_checkpoint(TaskType.CHAT, task_id, state) == state
    assert SEALER.seal_checkpoint(TaskType.CHAT, task_id, None) is None


@pytest.mark.parametrize("task_type", [TaskType.DOCUMENT, TaskType.CAMERA, TaskType.TOOL])
def test_other_checkpoints_stay_plain(task_type: TaskType) -> None:
    state = {"pages_done": 3}
    assert SEALER.seal_checkpoint(task_type, uuid4(), state) == state


def test_a_tool_calls_arguments_are_sealed_to_the_child_and_open_only_there() -> None:
    child = uuid4()
    arguments = {"to": ["bob@example.com"], "body": "secret"}
    written = SEALER.seal_input(
        TaskType.TOOL, child, {"call_id": "c", "name": "send_email", "arguments": arguments}
    )
    assert (written["call_id"], written["name"]) == ("c", "send_email")
    assert KEYS.open(written["arguments"], row=child, field="arguments") == arguments
    payload = ToolPayload.parse(written)
    assert SEALER.open_payload(TaskType.TOOL, child, payload).arguments == arguments
    with pytest.raises(InvalidPayload, match=r"^arguments: .*moved or altered"):
        SEALER.open_payload(TaskType.TOOL, uuid4(), payload)


def test_chat_inputs_are_not_sealed() -> None:
    value = {"content": "hello"}
    assert SEALER.seal_input(TaskType.CHAT, uuid4(), value) == value


@pytest.mark.parametrize(
    ("task_type", "output", "path", "label"),
    [
        (TaskType.TOOL, {"call_id": "c", "result": {"sent": 1}}, ("result",), "result"),
        (TaskType.CHAT, {"reply": "hi", "memories": {"facts": ["Ann"], "saved": 1}},
         ("memories", "facts"), "memories"),
    ],
)  # fmt: skip
def test_outputs_seal_their_sensitive_field_only(
    task_type: TaskType, output: dict[str, Any], path: tuple[str, ...], label: str
) -> None:
    task_id = uuid4()
    sealed = SEALER.seal_output(task_type, task_id, output)
    inner, plain = sealed, output
    for key in path:
        inner, plain = inner[key], plain[key]
    assert is_sealed(inner)
    assert KEYS.open(inner, row=task_id, field=label) == plain
    assert KEYS.reveal(sealed, row=task_id) == output
    # Sealing again leaves a sealed value as it is
    assert SEALER.seal_output(task_type, task_id, sealed) == sealed


def test_outputs_without_the_field_and_other_types_are_untouched() -> None:
    assert SEALER.seal_output(TaskType.CHAT, uuid4(), {"reply": "hi"}) == {"reply": "hi"}
    assert SEALER.seal_output(TaskType.DOCUMENT, uuid4(), {"result": 1}) == {"result": 1}
    assert SEALER.seal_output(TaskType.TOOL, uuid4(), None) is None

"""taskfleet.core.messages.parse_message: every body is untrusted; bad ones are InvalidPayload."""

import uuid
from typing import Any

import orjson
import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.errors import InvalidPayload
from taskfleet.core.messages import TaskMessage, parse_message

TASK_ID = uuid.uuid4()


def body(**changes: Any) -> bytes:
    """A valid message body; a change to `...` removes the key."""
    raw: dict[str, Any] = {
        "v": 1,
        "task_id": str(TASK_ID),
        "type": "chat_message",
        "user_id": "alice@example.com",
        "chat_id": "chat-1",
        "attempt": 1,
        "payload": {"content": "hello"},
    }
    for key, value in changes.items():
        if value is ...:
            raw.pop(key)
        else:
            raw[key] = value
    return orjson.dumps(raw)


def test_valid_body_parses() -> None:
    msg = parse_message(body())
    assert msg.task_id == TASK_ID
    assert msg.type is TaskType.CHAT
    assert msg.user_id == "alice@example.com"
    assert msg.chat_id == "chat-1"
    assert msg.attempt == 1
    assert msg.payload == {"content": "hello"}


def test_optional_fields_default_and_unknown_keys_are_ignored() -> None:
    msg = parse_message(body(chat_id=..., attempt=..., payload=..., extra="x"))
    assert (msg.chat_id, msg.attempt, msg.payload) == (None, 1, {})


def test_dumps_round_trips() -> None:
    msg = parse_message(body(attempt=3))
    assert parse_message(msg.dumps()) == msg
    assert isinstance(msg, TaskMessage)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"not json", r"^body is not JSON"),
        (b"", r"^body is not JSON"),
        (b"\xff\xfe", r"^body is not JSON"),
        (b"[1, 2]", r"^body is not a JSON object"),
        (b'"text"', r"^body is not a JSON object"),
        (b"null", r"^body is not a JSON object"),
        (body(task_id=...), r"^schema: task_id: .*required"),
        (body(task_id="not-a-uuid"), r"^schema: task_id: .*UUID"),
        (body(type="email"), r"^schema: type: "),
        (body(user_id="alice smith"), r"^schema: user_id: "),
        (body(user_id="a/b"), r"^schema: user_id: "),
        (body(user_id="alice\n"), r"^schema: user_id: "),
        (body(user_id=""), r"^schema: user_id: "),
        (body(user_id="x" * 129), r"^schema: user_id: "),
        (body(chat_id="c;1"), r"^schema: chat_id: "),
        (body(attempt=0), r"^schema: attempt: "),
        (body(v=2), r"^schema: v: "),
        (body(payload=[1]), r"^schema: payload: "),
    ],
)
def test_bad_body_is_invalid_payload_naming_the_problem(raw: bytes, expected: str) -> None:
    with pytest.raises(InvalidPayload, match=expected) as info:
        parse_message(raw)
    assert info.value.retryable is False
    assert info.value.code == "invalid_payload"

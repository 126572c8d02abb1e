"""taskfleet.core.payloads: each task type's input as its model, or InvalidPayload (permanent)
with a reason that names the field. The reasons are the ones the handlers gave before the
kernel validated for them; a missing field now says it is required."""

from typing import Any
from uuid import uuid4

import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.errors import InvalidPayload
from taskfleet.core.payloads import (
    PAYLOADS,
    CameraPayload,
    ChatPayload,
    DocumentPayload,
    Payload,
    ToolPayload,
)

NOT_AN_OBJECT = [None, "content", ["content"], 42]


def reason(model: type[Payload], raw: Any) -> str:
    with pytest.raises(InvalidPayload) as info:
        model.parse(raw)
    assert (info.value.code, info.value.retryable) == ("invalid_payload", False)
    return str(info.value)


def test_every_task_type_has_its_model() -> None:
    assert set(PAYLOADS) == set(TaskType)


@pytest.mark.parametrize(
    "payload",
    [
        {"content": None},
        {"content": ""},
        {"content": "   \n\t"},
        {"content": 42},
        {"content": ["hi"]},
    ],
)
def test_chat_content_must_be_non_empty_text(payload: Any) -> None:
    assert reason(ChatPayload, payload) == "payload.content must be non-empty text"


@pytest.mark.parametrize("payload", [{}, {"text": "wrong key"}])
def test_chat_content_is_required(payload: Any) -> None:
    assert reason(ChatPayload, payload) == "payload.content is required"


@pytest.mark.parametrize("model", list(PAYLOADS.values()))
@pytest.mark.parametrize("payload", NOT_AN_OBJECT)
def test_a_payload_that_is_not_an_object_says_so(model: type[Payload], payload: Any) -> None:
    assert reason(model, payload) == "payload must be a JSON object"


def test_chat_content_is_kept_as_it_is_and_other_keys_are_ignored() -> None:
    assert ChatPayload.parse({"content": "  hi there "}).content == "  hi there "
    assert ChatPayload.parse({"content": "x", "other": 1}) == ChatPayload(content="x")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, "payload.document_id is required"),
        ({"document_id": None}, "payload.document_id is not a uuid: 'None'"),
        ({"document_id": "nope"}, "payload.document_id is not a uuid: 'nope'"),
        ({"document_id": "x" * 200}, f"payload.document_id is not a uuid: {'x' * 80!r}"),
    ],
)
def test_a_document_payload_names_its_document(payload: Any, expected: str) -> None:
    assert reason(DocumentPayload, payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({}, "payload.frame_id is required"),
        ({"frame_id": "nope"}, "payload.frame_id must be a frame id (uuid)"),
        ({"frame_id": 5}, "payload.frame_id must be a frame id (uuid)"),
    ],
)
def test_a_camera_payload_names_its_frame(payload: Any, expected: str) -> None:
    assert reason(CameraPayload, payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"name": "calculator"}, "payload.call_id is required"),
        ({"call_id": "c1"}, "payload.name is required"),
        ({"call_id": "", "name": "calculator"}, r"payload.call_id: String should have at least"),
        ({"call_id": "c1", "name": 7}, "payload.name: Input should be a valid string"),
    ],
)
def test_a_tool_payload_names_the_field_at_fault(payload: Any, expected: str) -> None:
    assert reason(ToolPayload, payload).startswith(expected)


def test_valid_payloads_are_typed() -> None:
    doc, frame = uuid4(), uuid4()
    assert DocumentPayload.parse({"document_id": str(doc)}).document_id == doc
    assert CameraPayload.parse({"frame_id": str(frame), "camera_id": "gate"}).frame_id == frame
    call = ToolPayload.parse({"call_id": "c1", "name": "calculator"})
    assert (call.call_id, call.name, call.arguments) == ("c1", "calculator", {})

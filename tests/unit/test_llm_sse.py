"""taskfleet.llm.sse: events from bytes however they are cut, tool calls from fragments."""

import pytest

from taskfleet.llm.sse import SseParser, ToolCallAssembler
from taskfleet.llm.types import LlmBadResponse, ToolCall

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"a": 1}\n\n'
    b"event: ignored\r\n"
    b'data: {"b":\r\n'
    b"data: 2}\r\n\r\n"
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 2, 7, len(STREAM)])
def test_events_are_the_same_however_the_bytes_are_cut(size: int) -> None:
    parser = SseParser()
    events: list[str] = []
    for i in range(0, len(STREAM), size):
        events += parser.feed(STREAM[i : i + size])
    events += parser.close()
    assert events == ['{"a": 1}', '{"b":\n2}', "[DONE]"]


def test_an_event_without_its_blank_line_still_counts_at_the_end() -> None:
    parser = SseParser()
    assert parser.feed(b'data: {"last": true}') == []
    assert parser.close() == ['{"last": true}']


def test_tool_call_fragments_join_by_index_in_order() -> None:
    calls = ToolCallAssembler()
    calls.add([{"index": 1, "id": "b", "function": {"name": "current_time", "arguments": ""}}])
    calls.add([{"index": 0, "id": "a", "function": {"name": "calculator", "arguments": '{"ex'}}])
    calls.add([{"index": 0, "function": {"arguments": 'pression": "1+1"}'}}])
    calls.add([{"index": 1, "function": {"arguments": {"timezone": "UTC"}}}])  # an object
    assert calls.calls() == [
        ToolCall("a", "calculator", '{"expression": "1+1"}'),
        ToolCall("b", "current_time", '{"timezone":"UTC"}'),
    ]


def test_a_tool_call_without_a_name_is_a_bad_response() -> None:
    calls = ToolCallAssembler()
    calls.add([{"index": 0, "function": {"arguments": "{}"}}])
    with pytest.raises(LlmBadResponse):
        calls.calls()

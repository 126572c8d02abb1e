"""taskfleet.llm.scripted.ScriptedModel: deterministic, offline, streamed a word at a time."""

import pytest

from taskfleet.llm.scripted import ScriptedModel
from taskfleet.llm.types import StreamItem, ToolCall, ToolSpec


async def collect(model: ScriptedModel, messages: list[dict[str, str]]) -> list[str]:
    return [text(delta) async for delta in model.stream(messages)]


def text(delta: StreamItem) -> str:
    """Without tools the model only streams text."""
    if isinstance(delta, ToolCall):
        raise TypeError(f"a tool call from a model given no tools: {delta}")
    return delta


@pytest.mark.parametrize(
    "text",
    ["hello", "hello world, how are you?", "  padded  text  ", "two\nlines\tand  gaps", ""],
)
async def test_stream_joins_to_the_reply(text: str) -> None:
    model = ScriptedModel()
    messages = [{"role": "user", "content": text}]
    deltas = await collect(model, messages)
    assert "".join(deltas) == model.reply_for(messages) == f"You said: {text.strip()}"
    assert all(deltas)


async def test_stream_is_a_word_at_a_time() -> None:
    deltas = await collect(ScriptedModel(), [{"role": "user", "content": "one two three"}])
    assert deltas == ["You ", "said: ", "one ", "two ", "three"]


async def test_deterministic() -> None:
    messages = [{"role": "user", "content": "same input, same output"}]
    first = await collect(ScriptedModel(), messages)
    second = await collect(ScriptedModel(), messages)
    assert first == second
    assert ScriptedModel().reply_for(messages) == ScriptedModel().reply_for(messages)


def test_reply_is_for_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "You said: first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "not a user"},
    ]
    assert ScriptedModel().reply_for(messages) == "You said: second"
    assert ScriptedModel().name == "scripted"


async def test_nul_in_what_it_echoes_is_dropped() -> None:
    # It echoes the user's text; PostgreSQL could not store a NUL in the reply or the call.
    model = ScriptedModel()
    deltas = await collect(model, [{"role": "user", "content": "hel\x00lo \x00 there"}])
    assert "".join(deltas) == "You said: hello  there"
    calc = ToolSpec("calculator", "Arithmetic.", {"type": "object"})
    messages = [{"role": "user", "content": "calc: 2*\x0021"}]
    items = [item async for item in model.stream(messages, tools=[calc])]
    assert items == [ToolCall(id="call_1_0", name="calculator", arguments='{"expression":"2*21"}')]

"""The `scripted` provider: deterministic and offline, for development, demos and benchmarks.

It plays every part of the agent without a model:
- a plain message gets `You said: <text>`, streamed a word at a time;
- when tools are offered, a message made of tool commands (joined by ` && `) asks for them:
  `calc: 2*21`, `search: words`, `time?` or `time? Europe/Paris`, `fetch: https://…`,
  `email: to@example.com | subject | body`, and `tool: NAME {json}` for any tool with raw
  (even malformed) arguments;
- after tool results it answers with them (`2*21 = 42`, `explode failed: …`);
- asked to extract memories, it answers a JSON list of what the user said about themselves
  (`my name is …`, `I like …`, `I live in …`, `remember that …`).
"""

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from taskfleet.llm import prompts
from taskfleet.llm.types import ChatHistory, StreamItem, ToolCall, ToolSpec, without_nul

_WORD = re.compile(r"\S+\s*")

# command -> (tool, how the rest of the command becomes its arguments)
_COMMANDS: dict[str, tuple[str, str]] = {
    "calc": ("calculator", "expression"),
    "search": ("search_documents", "query"),
    "fetch": ("http_get", "url"),
}
_TOOL = re.compile(r"^tool:\s*([A-Za-z0-9_\-]+)\s*(.*)$", re.DOTALL)
_TIME = re.compile(r"^time\?\s*(\S*)$")
_EMAIL = re.compile(r"^email:\s*([^|]+)\|([^|]*)\|(.*)$", re.DOTALL)
# A fact ends at punctuation or at "and I ..." (the next fact).
_END = r"(?=\s+and\s+i\b|\s*[.!?,;]|\s*$)"
_FACTS = (
    (re.compile(r"\bmy name is ([A-Za-z][\w' -]*?)" + _END, re.I), "The user's name is {}."),
    (re.compile(r"\bi live in ([^.!?,;]+?)" + _END, re.I), "The user lives in {}."),
    (re.compile(r"\bi (?:like|love|enjoy) ([^.!?,;]+?)" + _END, re.I), "The user likes {}."),
    (re.compile(r"\bremember(?: that|:)\s*([^.!?]+)", re.I), "{}."),
)  # fmt: skip


@dataclass
class ScriptedModel:
    """`delay_s` between words makes it slow on purpose (demos, crash tests)."""

    delay_s: float = 0.0
    name: str = "scripted"

    async def aclose(self) -> None:
        """Nothing to release; the HTTP provider has a session to close."""

    def reply_for(self, messages: ChatHistory) -> str:
        """The plain answer to the last user message: an echo, the same for the same history."""
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return f"You said: {str(last).strip()}"

    async def stream(
        self, messages: ChatHistory, *, tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield the scripted reply word by word, or the tool calls the user's commands spell."""
        # It echoes the user's text, which may hold a NUL: the same boundary as a real model.
        async for item in self._items(messages, tools):
            if cleaned := without_nul(item):
                yield cleaned

    async def _items(
        self, messages: ChatHistory, tools: Sequence[ToolSpec] | None
    ) -> AsyncIterator[StreamItem]:
        if _is_memory_extraction(messages):
            yield orjson.dumps(facts_in(messages[-1].get("content") or "")).decode()
            return
        said = _conversation(messages)
        if said and said[-1].get("role") == "tool":
            text = tool_answer(said)
        else:
            calls = tool_calls_for(said) if tools is not None else []
            if calls:
                for call in calls:
                    yield call
                return
            text = self.reply_for(messages)
        for word in _WORD.findall(text):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield word


def _conversation(messages: ChatHistory) -> ChatHistory:
    """The messages without the system's instructions (they may come last)."""
    return [m for m in messages if m.get("role") != "system"]


def tool_calls_for(messages: ChatHistory) -> list[ToolCall]:
    """The tool calls the last user message spells, or [] when it is not only commands."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if last is None:
        return []
    round_no = 1 + sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
    calls = []
    for i, part in enumerate(str(last.get("content") or "").strip().split(" && ")):
        parsed = _command(part.strip())
        if parsed is None:
            return []
        name, arguments = parsed
        calls.append(ToolCall(id=f"call_{round_no}_{i}", name=name, arguments=arguments))
    return calls


def _command(text: str) -> tuple[str, str] | None:
    if match := _TOOL.match(text):
        return match[1], match[2].strip() or "{}"
    if match := _TIME.match(text):
        return "current_time", _json({"timezone": match[1]} if match[1] else {})
    if match := _EMAIL.match(text):
        to, subject, body = (g.strip() for g in match.groups())
        return "send_email", _json({"to": [to], "subject": subject, "body": body})
    command, sep, rest = text.partition(":")
    if sep and command.strip().lower() in _COMMANDS and rest.strip():
        tool, field = _COMMANDS[command.strip().lower()]
        return tool, _json({field: rest.strip()})
    return None


def tool_answer(messages: ChatHistory) -> str:
    """An answer made of the results of the last round of tool calls."""
    asked = next(
        (m for m in reversed(messages) if m.get("role") == "assistant" and m.get("tool_calls")), {}
    )
    names = {c["id"]: c["function"]["name"] for c in asked.get("tool_calls", [])}
    lines = []
    for message in messages[len(messages) - _trailing_tools(messages) :]:
        name = names.get(message.get("tool_call_id", ""), "tool")
        try:
            outcome = orjson.loads(message.get("content") or "")
        except orjson.JSONDecodeError:
            outcome = {"ok": True, "result": message.get("content")}
        lines.append(_describe(name, outcome))
    return "\n".join(lines)


def _describe(name: str, outcome: Any) -> str:
    if not isinstance(outcome, dict) or not outcome.get("ok"):
        error = outcome.get("error") if isinstance(outcome, dict) else outcome
        message = error.get("message") if isinstance(error, dict) else error
        return f"{name} failed: {message}"
    result = outcome.get("result")
    if name == "calculator" and isinstance(result, dict) and "result" in result:
        return f"{result.get('expression')} = {result['result']}"
    return f"{name}: {_json(result)}"


def _trailing_tools(messages: ChatHistory) -> int:
    count = 0
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        count += 1
    return count


def _is_memory_extraction(messages: ChatHistory) -> bool:
    return bool(messages) and messages[0].get("content") == prompts.MEMORY_EXTRACTION


def facts_in(exchange: str) -> list[str]:
    """What the user said about themselves, in the exchange the extraction prompt sends."""
    try:
        said = str(orjson.loads(exchange).get("user") or "")
    except (orjson.JSONDecodeError, AttributeError):
        said = exchange
    facts = []
    for pattern, template in _FACTS:
        for match in pattern.finditer(said):
            fact = template.format(match[1].strip())
            facts.append(fact[0].upper() + fact[1:])
    return facts


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()

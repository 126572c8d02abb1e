"""Server-sent events of a streamed `/chat/completions`, and the tool calls they spell out.

Kept apart from the HTTP client so that both are small and the parsing is tested on bytes.
"""

from dataclasses import dataclass, field
from typing import Any

import orjson

from taskfleet.llm.types import LlmBadResponse, ToolCall


class SseParser:
    """Bytes in, the `data` of each complete event out (several `data:` lines are joined).

    Comments (`:`), `event:`, `id:` and `retry:` fields are ignored; \\r\\n and \\n both end
    lines. Bytes that do not end a line yet are kept for the next feed.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The events that `chunk` completes; a partial line waits for the next chunk."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [event for line in lines if (event := self._line(line)) is not None]

    def close(self) -> list[str]:
        """At the end of the stream: an event whose blank line never came still counts."""
        events = self.feed(b"\n") if self._buffer else []
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _line(self, raw: bytes) -> str | None:
        line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        if not line:
            if not self._data:
                return None
            event, self._data = "\n".join(self._data), []
            return event
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class ToolCallAssembler:
    """Tool calls arrive in fragments keyed by `index`: the id and name first, then the
    arguments text in pieces. Fragments are joined as they come; `calls()` at the end."""

    _calls: dict[int, _PartialCall] = field(default_factory=dict)

    def add(self, fragments: Any) -> None:
        """Join one delta's `tool_calls` fragments to their calls; LlmBadResponse if malformed."""
        if not isinstance(fragments, list):
            raise LlmBadResponse("delta.tool_calls is not a list")
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                raise LlmBadResponse("a tool call fragment is not an object")
            index = fragment.get("index", position)
            call = self._calls.setdefault(
                index if isinstance(index, int) else position, _PartialCall()
            )
            call.id = call.id or str(fragment.get("id") or "")
            function = fragment.get("function") or {}
            if isinstance(function, dict):
                call.name = call.name or str(function.get("name") or "")
                arguments = function.get("arguments")
                if isinstance(arguments, str):
                    call.arguments.append(arguments)
                elif arguments is not None:  # a few servers send an object, not its text
                    call.arguments.append(orjson.dumps(arguments).decode())

    def calls(self) -> list[ToolCall]:
        """The whole calls, in index order; one without a name is the server's bug."""
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call.name:
                raise LlmBadResponse(f"tool call {index} has no function name")
            out.append(
                ToolCall(
                    id=call.id or f"call_{index}",
                    name=call.name,
                    arguments="".join(call.arguments) or "{}",
                )
            )
        return out

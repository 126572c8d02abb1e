"""What flows between the agent and a provider: messages, tool specs, tool calls, errors.

Messages are OpenAI chat messages as plain dicts (`role`, `content`, and for tool rounds
`tool_calls` / `tool_call_id`), so a conversation is stored in a checkpoint and sent to any
OpenAI-compatible server as it is.
"""

import re
from dataclasses import dataclass
from typing import Any

from taskfleet.core.errors import PermanentError, RetryableError

Message = dict[str, Any]
ChatHistory = list[Message]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it does, the JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]

    def openai(self) -> dict[str, Any]:
        """The spec as an entry of a chat completions request's `tools`."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for. `arguments` is the model's raw JSON text: it is
    repaired and validated by whoever runs it, never trusted."""

    id: str
    name: str
    arguments: str

    def openai(self) -> dict[str, Any]:
        """The call as an entry of an assistant message's `tool_calls` (sent back with results)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


# taskfleet_llm_requests_total{outcome}: one per HTTP attempt of the OpenAI-compatible client.
LLM_OUTCOMES = ("ok", "rate_limited", "server_error", "timeout", "connection_error", "rejected",
                "bad_response")  # fmt: skip

# A provider streams these: text deltas of the reply as they come, then the tool calls.
StreamItem = str | ToolCall

# `\u0000` in JSON text, unless its backslash is itself escaped (`\\u0000` is no NUL).
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def without_nul(item: StreamItem) -> StreamItem:
    """`item` without U+0000, which PostgreSQL text and jsonb cannot hold: a model that
    sends one would make its task's commit fail. Every provider passes what it yields through
    this. A tool call's arguments are JSON text, where NUL may also come escaped; its id and
    name go into a task's input as they are."""
    if isinstance(item, str):
        return item.replace("\x00", "")
    return ToolCall(
        id=item.id.replace("\x00", ""),
        name=item.name.replace("\x00", ""),
        arguments=_JSON_NUL.sub(r"\1", item.arguments.replace("\x00", "")),
    )


class LlmError(RetryableError):
    """The model could not answer this time (network, 5xx, a stall): worth another attempt."""

    code = "llm_error"


class LlmRateLimited(LlmError):
    code = "llm_rate_limited"


class LlmServerError(LlmError):
    code = "llm_server_error"


class LlmUnavailable(LlmError):
    code = "llm_unavailable"


class LlmTimeout(LlmError):
    code = "llm_timeout"


class LlmBadResponse(LlmError):
    code = "llm_bad_response"


class LlmRejected(PermanentError):
    """The server refused the request itself (400, 401, 403, 404...): retrying cannot help."""

    code = "llm_rejected"

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

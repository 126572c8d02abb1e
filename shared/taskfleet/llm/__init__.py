"""LLM providers behind one interface: `stream(messages, tools=...)` yields the reply's text
deltas, then the tool calls the model asked for."""

from collections.abc import AsyncIterator, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from taskfleet.core.errors import ConfigError
from taskfleet.core.metrics import LLM_REQUESTS
from taskfleet.core.settings import Settings
from taskfleet.llm.scripted import ScriptedModel
from taskfleet.llm.types import LLM_OUTCOMES, ChatHistory, StreamItem, ToolCall, ToolSpec

__all__ = ["ChatHistory", "ChatModel", "StreamItem", "ToolCall", "ToolSpec", "build_model"]


class ChatModel(Protocol):
    @property
    def name(self) -> str:
        """The model's name, as recorded in a chat task's output."""
        ...

    def stream(
        self, messages: ChatHistory, *, tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield text deltas as they come, then each ToolCall (only when `tools` were given).

        Raises taskfleet.llm.types.LlmError (retryable) or LlmRejected (permanent).
        """
        ...

    async def aclose(self) -> None:
        """Release connections (the worker calls it once, when it stops)."""
        ...


def build_model(settings: Settings) -> ChatModel:
    """The configured provider: OpenAI-compatible HTTP with LLM_BASE_URL, else `scripted`."""
    for outcome in LLM_OUTCOMES:  # exported at 0 from the start, whichever the provider
        LLM_REQUESTS.labels(outcome)
    if not settings.llm_base_url:
        return ScriptedModel(delay_s=settings.scripted_delay_ms / 1000)
    from taskfleet.llm.openai import OpenAIModel

    url = urlsplit(settings.llm_base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigError(
            f"LLM_BASE_URL: must be an http(s) URL like https://api.openai.com/v1"
            f" (got {settings.llm_base_url!r})"
        )
    if not settings.llm_model:
        raise ConfigError("LLM_MODEL: required with LLM_BASE_URL (the model name to ask for)")
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return OpenAIModel(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=key or None,
        timeout_s=settings.llm_timeout_s,
        max_attempts=settings.llm_max_attempts,
        max_wait_s=settings.llm_retry_max_wait_s,
    )

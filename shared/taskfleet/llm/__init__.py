"""LLM providers behind one interface: `stream(messages)` yields text deltas."""

from collections.abc import AsyncIterator
from typing import Protocol

from taskfleet.llm.scripted import ScriptedModel
from taskfleet.settings import Settings

ChatHistory = list[dict[str, str]]


class ChatModel(Protocol):
    name: str

    def stream(self, messages: ChatHistory) -> AsyncIterator[str]:
        """Yield the reply as text deltas."""
        ...


def build_model(settings: Settings) -> ChatModel:
    """The configured provider. Without LLM_BASE_URL, the offline `scripted` one."""
    if settings.llm_base_url:
        # The OpenAI-compatible HTTP client lands with the agent issue; refuse loudly rather
        # than answer with the wrong provider.
        from taskfleet.errors import ConfigError

        raise ConfigError("LLM_BASE_URL: the HTTP provider is not available in this version")
    return ScriptedModel(delay_s=settings.scripted_delay_ms / 1000)

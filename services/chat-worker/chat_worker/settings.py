"""chat-worker's own settings: the kernel's and the agent's (docs/agent.md)."""

from pydantic import Field

from taskfleet.core.settings import Settings


class ChatWorkerSettings(Settings):
    max_agent_steps: int = Field(5, ge=1, le=50, validation_alias="MAX_AGENT_STEPS")
    """Rounds of tool calls per chat task; after the last one the model is asked without tools and
    answers with what it has."""

    chat_history_messages: int = Field(20, ge=0, le=500, validation_alias="CHAT_HISTORY_MESSAGES")
    """Earlier messages of the chat sent to the model with each new one."""

    memory_extraction: bool = Field(True, validation_alias="MEMORY_EXTRACTION")
    """Extract memories after each reply: bounded on its own, never fails the reply."""

    memory_timeout_s: float = Field(20.0, gt=0, validation_alias="MEMORY_TIMEOUT_S")
    """How long one memory extraction may take."""

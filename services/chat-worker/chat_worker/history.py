"""What the agent reads from PostgreSQL: the chat so far and the user's memories (the
results of the tool calls it waited for: taskfleet.data.children)."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from taskfleet.data.memories import open_facts
from taskfleet.handler import Keyring
from taskfleet.llm.types import Message
from taskfleet.store.tenancy import Db

# The chat's earlier messages (before this task's own) and the user's memories, newest kept,
# in one round trip (taskfleet's store/sql/tf_chat_context.sql). A chat worker's claim
# usually brings it already.
CONTEXT_FUNCTION = "tf_chat_context"


@dataclass(frozen=True, slots=True)
class ChatContext:
    history: list[Message]
    memories: list[str]


async def load_context(
    pool: Db,
    *,
    chat_id: str | None,
    user_id: str,
    task_id: UUID,
    history_limit: int,
    memory_limit: int,
    keyring: Keyring,
) -> ChatContext:
    """The context the claim's preload brings, read on its own when the claim brought none.

    At most `history_limit` earlier completed messages of the chat (none without a chat) and
    the `memory_limit` newest memories of the user, their facts opened with `keyring`.
    """
    context = await pool.fetchval(
        f"SELECT {CONTEXT_FUNCTION}($1, $2, $3, $4, $5)",
        user_id,
        chat_id,
        task_id,
        history_limit,
        memory_limit,
    )
    return chat_context(context, keyring)


def chat_context(context: dict[str, Any], keyring: Keyring) -> ChatContext:
    """tf_chat_context's answer, its memory facts opened."""
    memories = open_facts(keyring, context["memories"])
    return ChatContext(history=list(context["history"]), memories=memories)

"""What the agent reads from PostgreSQL: the chat so far, the user's memories, and the
results of the tool calls it waited for."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from taskfleet.data.memories import open_fact
from taskfleet.llm.types import Message
from taskfleet.security.crypto import Keyring
from taskfleet.store.tenancy import Db

# The chat's earlier messages (before this task's own) and the user's memories, newest kept,
# in one round trip (taskfleet's store/sql/tf_chat_context.sql). A chat worker's claim
# usually brings it already.
CONTEXT_FUNCTION = "tf_chat_context"


@dataclass(frozen=True, slots=True)
class ChatContext:
    history: list[Message]
    memories: list[str]


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    status: str
    output: Any
    error: Any


async def load_context(
    pool: Db, *, chat_id: str | None, user_id: str, task_id: UUID,
    history_limit: int, memory_limit: int, keyring: Keyring,
) -> ChatContext:  # fmt: skip
    context = await pool.fetchval(
        f"SELECT {CONTEXT_FUNCTION}($1, $2, $3, $4, $5)",
        user_id, chat_id, task_id, history_limit, memory_limit,
    )  # fmt: skip
    return chat_context(context, keyring)


def chat_context(context: dict[str, Any], keyring: Keyring) -> ChatContext:
    """tf_chat_context's answer, its memory facts opened."""
    opened = (open_fact(keyring, memory_id, fact) for memory_id, fact in context["memories"])
    memories = [fact for fact in opened if fact is not None]
    return ChatContext(history=list(context["history"]), memories=memories)


async def child_outcomes(
    pool: Db, parent_id: UUID, task_ids: list[UUID]
) -> dict[UUID, ChildOutcome]:
    """The children's end states. Only the parent's own children count: a checkpoint names
    task ids, and the parent_id filter keeps it from reading anyone else's."""
    rows = await pool.fetch(
        "SELECT id, status, output, error FROM tasks WHERE parent_id = $1 AND id = ANY($2::uuid[])",
        parent_id, task_ids,
    )  # fmt: skip
    return {r["id"]: ChildOutcome(r["status"], r["output"], r["error"]) for r in rows}

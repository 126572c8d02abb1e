"""What the agent reads from PostgreSQL: the chat so far, the user's memories, and the
results of the tool calls it waited for."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from taskfleet.crypto import Keyring
from taskfleet.llm.types import Message
from taskfleet.memories import open_fact
from taskfleet.tenancy import Db

# The chat's earlier messages (before this task's own) and the user's memories, newest kept,
# in one round trip.
_CONTEXT = """
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object('role', h.role, 'content', h.content)
                             ORDER BY h.seq), '[]'::jsonb)
   FROM (SELECT m.role, m.content, m.seq FROM messages m
         WHERE $1::text IS NOT NULL AND m.chat_id = $1 AND m.user_id = $2
           AND m.role IN ('user', 'assistant') AND m.status = 'completed'
           AND m.task_id IS DISTINCT FROM $3
           AND m.seq < coalesce((SELECT o.seq FROM messages o
                                 WHERE o.task_id = $3 AND o.role = 'user'),
                                9223372036854775807)
         ORDER BY m.seq DESC LIMIT $4) h) AS history,
  (SELECT coalesce(jsonb_agg(jsonb_build_array(f.id, f.fact) ORDER BY f.created_at, f.id),
                   '[]'::jsonb)
   FROM (SELECT fact, created_at, id FROM memories WHERE user_id = $2
         ORDER BY created_at DESC, id DESC LIMIT $5) f) AS memories
"""


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
    row = await pool.fetchrow(_CONTEXT, chat_id, user_id, task_id, history_limit, memory_limit)
    assert row is not None
    opened = (open_fact(keyring, memory_id, fact) for memory_id, fact in row["memories"])
    memories = [fact for fact in opened if fact is not None]
    return ChatContext(history=list(row["history"]), memories=memories)


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

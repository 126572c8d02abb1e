"""What the agent remembers about a user (migrations/0007): chat-worker saves facts after each
reply and loads them into the next chat's context; the API lists them.

Facts are deduplicated per user by a normalised key (case, spacing and final punctuation do
not make a new fact), in the insert itself, so two replies saving the same fact at once
still store it once.
"""

import re
from typing import Any
from uuid import UUID

from taskfleet.tenancy import Db

MAX_FACT_CHARS = 300


def fact_key(fact: str) -> str:
    """`The user's name is  Ann.` and `the user's name is ann` are the same fact."""
    return re.sub(r"\s+", " ", fact).strip().rstrip(".!;, ").lower()


async def save_memories(
    pool: Db, user_id: str, facts: list[str], source_task_id: UUID | None
) -> int:
    """Insert the facts the user does not have yet; returns how many were new."""
    unique: dict[str, str] = {}
    for fact in facts:
        text = re.sub(r"\s+", " ", fact).strip()[:MAX_FACT_CHARS]
        if text and fact_key(text) not in unique:
            unique[fact_key(text)] = text
    if not unique:
        return 0
    rows = await pool.fetch(
        "INSERT INTO memories (user_id, fact, fact_key, source_task_id)"
        " SELECT $1, f.fact, f.key, $4 FROM unnest($2::text[], $3::text[]) AS f(fact, key)"
        " ON CONFLICT (user_id, fact_key) DO NOTHING RETURNING id",
        user_id, list(unique.values()), list(unique.keys()), source_task_id,
    )  # fmt: skip
    return len(rows)


async def list_memories(pool: Db, user_id: str, *, limit: int) -> list[dict[str, Any]]:
    """The user's memories, newest first."""
    rows = await pool.fetch(
        "SELECT id, fact, source_task_id, created_at FROM memories WHERE user_id = $1"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        user_id, limit,
    )  # fmt: skip
    return [dict(r) for r in rows]

"""What the agent remembers about a user (migrations/0007): chat-worker saves facts after each
reply and loads them into the next chat's context; the API lists them.

Facts are deduplicated per user by a normalised key (case, spacing and final punctuation do
not make a new fact), in the insert itself, so two replies saving the same fact at once
still store it once.

A fact is stored sealed (taskfleet.security.crypto), bound to its memory's id, and its key is
the blind index of the normalised fact: neither column shows the fact. A fact whose key was
made under an older encryption key still counts until `taskfleet rotate-key` remakes it.
"""

import re
from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid4

import structlog

from taskfleet.security.crypto import Keyring, Unsealable
from taskfleet.store.tenancy import Db

log = structlog.get_logger("taskfleet.memories")

MAX_FACT_CHARS = 300
FACT = "fact"


def fact_key(fact: str) -> str:
    """`The user's name is  Ann.` and `the user's name is ann` are the same fact."""
    return re.sub(r"\s+", " ", fact).strip().rstrip(".!;, ").lower()


async def save_memories(
    pool: Db,
    keyring: Keyring,
    user_id: str,
    facts: list[str],
    source_task_id: UUID | None,
) -> int:
    """Insert the facts the user does not have yet; returns how many were new."""
    unique: dict[str, str] = {}
    for fact in facts:
        text = re.sub(r"\s+", " ", fact).strip()[:MAX_FACT_CHARS]
        if text and fact_key(text) not in unique:
            unique[fact_key(text)] = text
    if not unique:
        return 0
    new = []
    for key, text in unique.items():
        memory_id = uuid4()
        sealed = keyring.seal_text(text, row=memory_id, field=FACT)
        new.append(
            {
                "id": str(memory_id),
                "fact": sealed,
                "key": keyring.blind_index(key, scope=user_id),
                "keys": keyring.blind_indexes(key, scope=user_id),
            }
        )
    # The unique index catches a fact saved twice at once under the current key; NOT EXISTS
    # catches one saved before a key rotation, whose key is its blind index under an older key.
    rows = await pool.fetch(
        "INSERT INTO memories (id, user_id, fact, fact_key, source_task_id)"
        " SELECT f.id, $1, f.fact, f.key, $3"
        " FROM jsonb_to_recordset($2::jsonb) AS f(id uuid, fact text, key text, keys jsonb)"
        " WHERE NOT EXISTS (SELECT 1 FROM memories m WHERE m.user_id = $1"
        "  AND m.fact_key IN (SELECT jsonb_array_elements_text(f.keys)))"
        " ON CONFLICT (user_id, fact_key) DO NOTHING RETURNING id",
        user_id,
        new,
        source_task_id,
    )
    return len(rows)


async def list_memories(
    pool: Db, keyring: Keyring, user_id: str, *, limit: int
) -> list[dict[str, Any]]:
    """The user's memories, newest first, their facts opened."""
    rows = await pool.fetch(
        "SELECT id, fact, source_task_id, created_at FROM memories WHERE user_id = $1"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        user_id,
        limit,
    )
    opened = [dict(r) | {"fact": open_fact(keyring, r["id"], r["fact"])} for r in rows]
    return [m for m in opened if m["fact"] is not None]


def open_facts(keyring: Keyring, stored: Iterable[tuple[UUID | str, str]]) -> list[str]:
    """The facts of (memory id, stored fact) pairs in the clear; those that do not open are
    left out (open_fact)."""
    opened = (open_fact(keyring, memory_id, fact) for memory_id, fact in stored)
    return [fact for fact in opened if fact is not None]


def open_fact(keyring: Keyring, memory_id: UUID | str, fact: str) -> str | None:
    """A stored fact in the clear (one saved before sealing was deployed is plain already);
    None, logged, for one that does not open: a lost memory must not fail a chat."""
    try:
        return str(keyring.open_text(fact, row=memory_id, field=FACT))
    except Unsealable as exc:
        log.warning("memory_unsealable", memory_id=str(memory_id), error=str(exc))
        return None

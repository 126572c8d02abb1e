"""Fleet-wide rate limits (docs/scheduling.md#rate-limits): a token bucket per key in the
database (migrations/0025_rate_limits.sql), which every claim draws from
(store/sql/tf_take_token.sql). Set, read and removed by operators, in audited transactions."""

import re
from typing import Any

from taskfleet.store.tenancy import Db

# `tool:<name>` for an agent's tool calls, else a task type.
KEY_PATTERN = r"^(?:chat_message|document_processing|camera_analysis|tool:[A-Za-z0-9_.-]{1,64})$"
_COLUMNS = "key, per_s, burst, throttled, updated_at"
_SET = f"""
INSERT INTO rate_limits (key, per_s, burst, tokens) VALUES ($1, $2, $3::integer, $3::integer)
ON CONFLICT (key) DO UPDATE SET per_s = $2, burst = $3::integer,
    tokens = least(rate_limits.tokens, $3::integer), updated_at = now()
RETURNING {_COLUMNS}
"""


def valid_key(key: str) -> bool:
    """Whether `key` names what a limit can apply to."""
    return re.fullmatch(KEY_PATTERN, key) is not None


async def set_limit(db: Db, key: str, *, per_s: float, burst: int) -> dict[str, Any]:
    """Set (or change) the limit of `key`; a changed one keeps the tokens it has, up to burst."""
    row = await db.fetchrow(_SET, key, per_s, burst)
    assert row is not None
    return dict(row)


async def list_limits(db: Db) -> list[dict[str, Any]]:
    """Every limit, by key, with how many claims each put back since it was set."""
    return [dict(r) for r in await db.fetch(f"SELECT {_COLUMNS} FROM rate_limits ORDER BY key")]


async def remove_limit(db: Db, key: str) -> bool:
    """No limit on `key` any more; False if it had none."""
    return await db.execute("DELETE FROM rate_limits WHERE key = $1", key) != "DELETE 0"

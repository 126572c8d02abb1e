"""A batch's `then` task (a chord, docs/scheduling.md#batches): its message, followed by what
each member of its batch answered, read by reference when it runs (the members' outputs are
never copied into it)."""

from typing import Any
from uuid import UUID

from taskfleet.store.tenancy import Db

# Enough of each member for a model to work with; a batch holds at most BATCH_MAX_MEMBERS.
MEMBER_CHARS = 2_000

_MEMBERS = """
SELECT status, output ->> 'reply' AS reply, error ->> 'code' AS error_code,
       error ->> 'message' AS error_message
FROM tasks WHERE batch_id = $1 AND id = ANY($2::uuid[])
ORDER BY array_position($2::uuid[], id)
"""


async def with_members(db: Db, content: str, batch_id: UUID, members: list[UUID]) -> str:
    """`content`, then one numbered line per member, in the batch's order: its reply, or how
    it ended."""
    rows = await db.fetch(_MEMBERS, batch_id, members)  # the user's own rows: row security
    lines = [_outcome(i, dict(r)) for i, r in enumerate(rows, start=1)]
    return f"{content}\n\nThe results of batch {batch_id}:\n" + "\n".join(lines)


def _outcome(n: int, member: dict[str, Any]) -> str:
    if member["status"] == "completed" and member["reply"] is not None:
        said = str(member["reply"])
    elif member["error_code"]:
        said = f"({member['status']}: {member['error_code']}: {member['error_message'] or ''})"
    else:
        said = f"({member['status']})"
    if len(said) > MEMBER_CHARS:
        said = said[:MEMBER_CHARS] + "…"
    return f"{n}. {said}"

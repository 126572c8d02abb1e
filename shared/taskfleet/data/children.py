"""The end states of a task's child tasks, as their parent reads them on resume: their
outputs in the clear (a tool call's result is sealed at rest: taskfleet.security.fields)."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from taskfleet.security.crypto import Keyring, Unsealable
from taskfleet.security.fields import unsealable
from taskfleet.store.tenancy import Db


@dataclass(frozen=True, slots=True)
class ChildOutcome:
    status: str
    output: Any
    error: Any


async def child_outcomes(
    db: Db, keyring: Keyring, parent_id: UUID, task_ids: list[UUID]
) -> dict[UUID, ChildOutcome]:
    """The children's end states. Only the parent's own children count: a checkpoint names
    task ids, and the parent_id filter keeps it from reading anyone else's.

    A result that does not open is the parent's error: `unknown_key` (a retry) or
    `unsealable` (permanent)."""
    rows = await db.fetch(
        "SELECT id, status, output, error FROM tasks WHERE parent_id = $1 AND id = ANY($2::uuid[])",
        parent_id,
        task_ids,
    )
    return {
        r["id"]: ChildOutcome(r["status"], _opened(keyring, r["id"], r["output"]), r["error"])
        for r in rows
    }


def _opened(keyring: Keyring, task_id: UUID, output: Any) -> Any:
    try:
        return keyring.reveal(output, row=task_id)
    except Unsealable as exc:
        raise unsealable("tool call result", exc) from None

"""The record of a tool call with side effects, one per tool_execution task (tool_calls): what
makes it run at most once (tool_worker.effects). Its result is sealed at rest to the task's
id, as the task's own output.result is (taskfleet.security.fields); it reads in the clear."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from taskfleet.security.crypto import Keyring, Unsealable
from taskfleet.security.fields import RESULT, unsealable
from taskfleet.store.tenancy import Db


@dataclass(frozen=True, slots=True)
class Recorded:
    state: str  # started, succeeded or failed
    result: Any
    error: dict[str, Any] | None
    age_s: float  # since it was started


async def start(db: Db, *, task_id: UUID, call_id: str, tool: str) -> bool:
    """Record the call as `started`; False if it was recorded already (by an earlier attempt)."""
    claimed = await db.fetchval(
        "INSERT INTO tool_calls (task_id, call_id, tool, state) VALUES ($1, $2, $3, 'started')"
        " ON CONFLICT (task_id) DO NOTHING RETURNING true",
        task_id,
        call_id,
        tool,
    )
    return bool(claimed)


async def forget_started(db: Db, task_id: UUID) -> None:
    """The call surely did nothing: its record goes, and a retry may run it."""
    await db.execute("DELETE FROM tool_calls WHERE task_id = $1 AND state = 'started'", task_id)


async def succeeded(db: Db, keyring: Keyring, task_id: UUID, result: Any) -> None:
    """Record the call as succeeded, its result sealed to the task's id: it never runs again."""
    sealed = keyring.seal(result, row=task_id, field=RESULT)
    await _finish(db, task_id, "succeeded", sealed, None)


async def failed(db: Db, task_id: UUID, error: dict[str, Any]) -> None:
    """Record the call as failed with `error` (TaskError.as_dict): no retry runs it again."""
    await _finish(db, task_id, "failed", None, error)


async def _finish(
    db: Db, task_id: UUID, state: str, result: Any, error: dict[str, Any] | None
) -> None:
    await db.execute(
        "UPDATE tool_calls SET state = $2, result = $3, error = $4, finished_at = now()"
        " WHERE task_id = $1 AND state = 'started'",
        task_id,
        state,
        result,
        error,
    )


async def recorded(db: Db, keyring: Keyring, task_id: UUID) -> Recorded | None:
    """The call's record, its result in the clear; None if there is none."""
    row = await db.fetchrow(
        "SELECT state, result, error, extract(epoch FROM now() - started_at) AS age"
        " FROM tool_calls WHERE task_id = $1",
        task_id,
    )
    if row is None:
        return None
    try:
        result = keyring.reveal(row["result"], row=task_id)
    except Unsealable as exc:
        raise unsealable("recorded tool result", exc) from None
    return Recorded(row["state"], result, row["error"], float(row["age"]))

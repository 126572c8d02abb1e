"""At most once per call for a tool with side effects, whatever is redelivered (docs/agent.md).

Before the tool runs, its call (the tool_execution task) is recorded as `started`; after, as
`succeeded` with the result or `failed` with the error. Only the attempt that inserted the
record runs the tool. Any later attempt of the same call (a redelivery after a crash, a
takeover, a retry) reads the record instead:

- `succeeded`: the recorded result, and the tool does not run again;
- `failed`: the recorded error (permanent);
- `started`: the first run may still be going on (a holder that lost the broker but not its
  process): wait until its timeout is over; if it is still `started` then, the worker that ran
  it died in between and nobody can know whether the effect happened. The call fails with
  `tool_outcome_unknown` rather than risk doing it twice.

A tool that raises ToolUnavailable says nothing happened (e.g. the SMTP server refused the
connection): the record is removed, and the retry may run it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from taskfleet.handler import PermanentError, TaskError
from taskfleet.store.tenancy import Db
from tool_worker.registry import ToolUnavailable

POLL_S = 0.25


async def run_once(
    pool: Db, *, task_id: UUID, call_id: str, tool: str,
    run: Callable[[], Awaitable[Any]], settle_s: float,
) -> tuple[Any, bool]:  # fmt: skip
    """(result, ran_now). Raises the call's error, recorded or new."""
    claimed = await pool.fetchval(
        "INSERT INTO tool_calls (task_id, call_id, tool, state) VALUES ($1, $2, $3, 'started')"
        " ON CONFLICT (task_id) DO NOTHING RETURNING true",
        task_id, call_id, tool,
    )  # fmt: skip
    if not claimed:
        return await _recorded(pool, task_id, tool, settle_s), False
    try:
        result = await run()
    except ToolUnavailable:
        await pool.execute(
            "DELETE FROM tool_calls WHERE task_id = $1 AND state = 'started'", task_id
        )
        raise
    except TaskError as exc:
        if exc.retryable:  # only ToolUnavailable vouches that nothing happened
            exc = PermanentError(f"{tool} failed and may have acted: {exc}",
                                 code="tool_outcome_unknown")  # fmt: skip
        await _finish(pool, task_id, "failed", None, exc.as_dict())
        raise exc from None
    # Anything else (a cancel, a shutdown, a crash) leaves `started`: the outcome is unknown.
    await _finish(pool, task_id, "succeeded", result, None)
    return result, True


async def _finish(
    pool: Db, task_id: UUID, state: str, result: Any, error: dict[str, Any] | None
) -> None:
    await pool.execute(
        "UPDATE tool_calls SET state = $2, result = $3, error = $4, finished_at = now()"
        " WHERE task_id = $1 AND state = 'started'",
        task_id, state, result, error,
    )  # fmt: skip


async def _recorded(pool: Db, task_id: UUID, tool: str, settle_s: float) -> Any:
    while True:
        row = await pool.fetchrow(
            "SELECT state, result, error, extract(epoch FROM now() - started_at) AS age"
            " FROM tool_calls WHERE task_id = $1",
            task_id,
        )
        if row is None:  # removed by a ToolUnavailable meanwhile: nothing happened
            raise ToolUnavailable(f"{tool}: an earlier attempt found its dependency away")
        if row["state"] == "succeeded":
            return row["result"]
        if row["state"] == "failed":
            error = row["error"] or {}
            raise PermanentError(str(error.get("message", f"{tool} failed")),
                                 code=str(error.get("code", "tool_failed")))  # fmt: skip
        age = float(row["age"])
        if age >= settle_s:
            raise PermanentError(
                f"{tool} was started by a worker that was lost before it recorded the outcome;"
                " it may have run, so it is not run again",
                code="tool_outcome_unknown",
            )
        await asyncio.sleep(min(POLL_S, settle_s - age))

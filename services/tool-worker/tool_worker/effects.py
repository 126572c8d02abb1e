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

from taskfleet.data import toolcalls
from taskfleet.handler import Keyring, PermanentError, TaskError
from taskfleet.store.tenancy import Db
from tool_worker.registry import ToolUnavailable

POLL_S = 0.25


async def run_once(
    pool: Db,
    keyring: Keyring,
    *,
    task_id: UUID,
    call_id: str,
    tool: str,
    run: Callable[[], Awaitable[Any]],
    settle_s: float,
) -> tuple[Any, bool]:
    """(result, ran_now). Raises the call's error, recorded or new. `keyring` seals the
    recorded result (taskfleet.data.toolcalls)."""
    if not await toolcalls.start(pool, task_id=task_id, call_id=call_id, tool=tool):
        return await _recorded(pool, keyring, task_id, tool, settle_s), False
    try:
        result = await run()
    except ToolUnavailable:
        await toolcalls.forget_started(pool, task_id)
        raise
    except TaskError as exc:
        if exc.retryable:  # only ToolUnavailable vouches that nothing happened
            exc = PermanentError(
                f"{tool} failed and may have acted: {exc}", code="tool_outcome_unknown"
            )
        await toolcalls.failed(pool, task_id, exc.as_dict())
        raise exc from None
    # Anything else (a cancel, a shutdown, a crash) leaves `started`: the outcome is unknown.
    await toolcalls.succeeded(pool, keyring, task_id, result)
    return result, True


async def _recorded(pool: Db, keyring: Keyring, task_id: UUID, tool: str, settle_s: float) -> Any:
    while True:
        record = await toolcalls.recorded(pool, keyring, task_id)
        if record is None:  # removed by a ToolUnavailable meanwhile: nothing happened
            raise ToolUnavailable(f"{tool}: an earlier attempt found its dependency away")
        if record.state == "succeeded":
            return record.result
        if record.state == "failed":
            error = record.error or {}
            raise PermanentError(
                str(error.get("message", f"{tool} failed")),
                code=str(error.get("code", "tool_failed")),
            )
        age = record.age_s
        if age >= settle_s:
            raise PermanentError(
                f"{tool} was started by a worker that was lost before it recorded the outcome;"
                " it may have run, so it is not run again",
                code="tool_outcome_unknown",
            )
        await asyncio.sleep(min(POLL_S, settle_s - age))

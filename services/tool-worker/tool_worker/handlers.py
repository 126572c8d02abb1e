"""What a tool_execution task is: one tool call of the agent, run once, answered with its
result (docs/agent.md). Its parent chat task resumes when the last of its calls ends."""

from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskfleet.core.errors import InvalidPayload, RetryableError
from taskfleet.core.faults import Faults
from taskfleet.path.context import TaskContext, TaskResult
from taskfleet.security.crypto import Keyring, UnknownKey, Unsealable, is_sealed
from tool_worker.effects import run_once
from tool_worker.registry import Registry, ToolContext
from tool_worker.settings import ToolWorkerSettings

log = structlog.get_logger("tool_worker")

# How long past its timeout a side-effect call found `started` may still be finishing.
SETTLE_GRACE_S = 5.0
# The label of a call's sealed result (taskfleet.security.crypto), in output and tool_calls.
RESULT = "result"


class ToolInvocation(BaseModel):
    """The task's input, as chat-worker writes it (and as anyone publishing may forge it)."""

    model_config = ConfigDict(extra="ignore")

    call_id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    arguments: Any = Field(default_factory=dict)


@dataclass(frozen=True)
class ToolWorker:
    registry: Registry
    settings: ToolWorkerSettings
    faults: Faults


async def handle_tool(ctx: TaskContext, *, worker: ToolWorker) -> TaskResult:
    try:
        call = ToolInvocation.model_validate(ctx.input)
    except ValidationError as exc:
        raise InvalidPayload(f"not a tool call: {exc.errors()[0]['msg']}") from None
    keyring = Keyring.from_settings(worker.settings)
    if worker.settings.environment == "production" and not is_sealed(call.arguments):
        # The agent always seals them to the call's own task: plain arguments were written
        # by someone else, and a tool call is not run on a stranger's word.
        raise InvalidPayload("arguments: not sealed (required in production)")
    try:  # sealed by the agent to this task's id; a forged or moved copy does not open
        arguments = keyring.reveal(call.arguments, row=ctx.task_id)
    except UnknownKey as exc:
        # An agent that already has a newer key sealed them (a rolling restart): a retry
        # lands on a tool worker that has it too, or on this one restarted with it.
        raise RetryableError(f"arguments: {exc}", code="unknown_key") from None
    except Unsealable as exc:
        raise InvalidPayload(f"arguments: {exc}") from None
    tool = worker.registry.get(call.name)  # unknown: permanent, and the model is told
    args = tool.parse(arguments)  # invalid: the same
    tctx = ToolContext(task_id=ctx.task_id, call_id=call.call_id, user_id=ctx.user_id,
                       settings=worker.settings, db=ctx.db)  # fmt: skip

    async def run() -> Any:
        # Sealed before it is stored anywhere: tool_calls.result, the output, the event.
        result = await worker.registry.run(tool, args, tctx)
        return keyring.seal(result, row=ctx.task_id, field=RESULT)

    if tool.side_effect:
        result, ran = await run_once(
            ctx.db, task_id=ctx.task_id, call_id=call.call_id, tool=tool.name, run=run,
            settle_s=tool.timeout_s + SETTLE_GRACE_S,
        )  # fmt: skip
        if ran:
            # Test-only (TASKFLEET_FAULTS=after_side_effect): die with the effect done and
            # recorded but the task not completed nor its message acknowledged.
            worker.faults.hit("after_side_effect")
        log.info("tool_ran", tool=tool.name, call_id=call.call_id, replayed=not ran)
    else:
        result = await run()
        log.info("tool_ran", tool=tool.name, call_id=call.call_id)
    return TaskResult(output={"call_id": call.call_id, "name": tool.name, "result": result})

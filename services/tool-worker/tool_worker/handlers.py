"""What a tool_execution task is: one tool call of the agent, run once, answered with its
result (docs/agent.md). Its parent chat task resumes when the last of its calls ends."""

from dataclasses import dataclass
from typing import Any

import structlog

from taskfleet.core.faults import Faults
from taskfleet.handler import TaskContext, TaskResult, ToolPayload
from tool_worker.effects import run_once
from tool_worker.registry import Registry, ToolContext
from tool_worker.settings import ToolWorkerSettings

log = structlog.get_logger("tool_worker")

# How long past its timeout a side-effect call found `started` may still be finishing.
SETTLE_GRACE_S = 5.0


@dataclass(frozen=True)
class ToolWorker:
    registry: Registry
    settings: ToolWorkerSettings
    faults: Faults


async def handle_tool(ctx: TaskContext[ToolPayload], *, worker: ToolWorker) -> TaskResult:
    """Run the call. Its arguments come in the clear and its result goes out so: the kernel
    opens and seals them at rest (a forged or moved copy of sealed arguments never opens)."""
    call = ctx.payload
    tool = worker.registry.get(call.name)  # unknown: permanent, and the model is told
    args = tool.parse(call.arguments)  # invalid: the same
    tctx = ToolContext(
        task_id=ctx.task_id,
        call_id=call.call_id,
        user_id=ctx.user_id,
        settings=worker.settings,
        db=ctx.db,
    )

    async def run() -> Any:
        return await worker.registry.run(tool, args, tctx)

    if tool.side_effect:
        result, ran = await run_once(
            ctx.db,
            ctx.keyring,
            task_id=ctx.task_id,
            call_id=call.call_id,
            tool=tool.name,
            run=run,
            settle_s=tool.timeout_s + SETTLE_GRACE_S,
        )
        if ran:
            # Test-only (TASKFLEET_FAULTS=after_side_effect): die with the effect done and
            # recorded but the task not completed nor its message acknowledged.
            worker.faults.hit("after_side_effect")
        log.info("tool_ran", tool=tool.name, call_id=call.call_id, replayed=not ran)
    else:
        result = await run()
        log.info("tool_ran", tool=tool.name, call_id=call.call_id)
    return TaskResult(output={"call_id": call.call_id, "name": tool.name, "result": result})

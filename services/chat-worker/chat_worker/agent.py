"""The agent loop of a chat task (DESIGN.md §8; docs/agent.md).

Each attempt of a chat task is one round: the model reads the chat, the user's memories and
the rounds so far, and either answers or asks for tools. Tool calls become child tasks on
tool_executions and the task returns `Waiting`: it is acknowledged and frees its worker while
the tools run. When the last child ends, the task is queued again and the next attempt starts
from its checkpoint (the rounds so far) with the tools' results. After MAX_AGENT_STEPS rounds
of tools the model is asked without tools, so it answers with what it has.
"""

from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID, uuid4

import orjson
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from chat_worker.history import chat_context, load_context
from chat_worker.memory import remember
from chat_worker.settings import ChatWorkerSettings
from chat_worker.streaming import ReplyWriter
from taskfleet.broker.publisher import new_task
from taskfleet.core.constants import TERMINAL
from taskfleet.data.children import ChildOutcome, child_outcomes
from taskfleet.handler import (
    RetryableError,
    TaskContext,
    TaskResult,
    TaskType,
    Waiting,
)
from taskfleet.llm import ChatModel, prompts
from taskfleet.llm.jsonfix import loads_lenient
from taskfleet.llm.types import ChatHistory, Message, ToolCall, ToolSpec
from taskfleet.store.records import NewTask

log = structlog.get_logger("chat_worker.agent")

# More calls than this in one round are not run (a model in a loop); the first ones are.
MAX_CALLS_PER_ROUND = 16
# A tool's result goes back into the model's context: keep it within reason.
MAX_RESULT_CHARS = 16_000
MEMORY_CONTEXT = 50
STEP_LIMIT_REPLY = "I could not finish this within the tool rounds allowed for one message."


class PendingCall(BaseModel):
    call_id: str
    name: str
    task_id: UUID


class AgentState(BaseModel):
    """The checkpoint of a chat task between rounds (sealed at rest by the kernel, whole:
    its turns hold the tools' arguments and results)."""

    model_config = ConfigDict(extra="ignore")

    v: Literal[1] = 1
    step: int = 0  # rounds of tool calls so far
    turns: list[Message] = []  # this task's assistant and tool messages, in order
    pending: list[PendingCall] = []  # the calls whose child tasks it waits for
    reply: str = ""  # the reply text of the earlier rounds
    calls: list[dict[str, Any]] = []  # every call made, for the task's output

    @classmethod
    def resume(cls, checkpoint: Any) -> "AgentState":
        """The state to go on from; a fresh one for a first attempt (None), and for a checkpoint
        this version cannot read (the reply then starts over)."""
        if checkpoint is None:
            return cls()
        try:
            return cls.model_validate(checkpoint)
        except ValidationError as exc:  # not ours (an older version's): start the reply again
            log.warning("agent_checkpoint_ignored", error=str(exc.errors()[0]["msg"]))
            return cls()


@dataclass(frozen=True)
class Agent:
    model: ChatModel
    settings: ChatWorkerSettings
    tools: list[ToolSpec]

    async def run(self, ctx: TaskContext, content: str) -> TaskResult | Waiting:
        """One attempt of a chat task: one round of the model, which answers or asks for tools.

        Tool calls become child tasks and the attempt returns `Waiting`, its round checkpointed;
        the next attempt gives the model their results. A whole reply completes the task, and
        its memories are extracted (MEMORY_EXTRACTION).
        """
        state = AgentState.resume(ctx.last_checkpoint)
        if state.pending:
            await self._collect(ctx, state)
        if ctx.preloaded is not None:  # read by the claim (chat_worker.main.context_preload)
            chat = chat_context(ctx.preloaded, ctx.keyring)
        else:
            chat = await load_context(
                ctx.db,
                chat_id=ctx.chat_id,
                user_id=ctx.user_id,
                task_id=ctx.task_id,
                history_limit=self.settings.chat_history_messages,
                memory_limit=MEMORY_CONTEXT,
                keyring=ctx.keyring,
            )
        final = state.step >= self.settings.max_agent_steps
        # One system message, first: many chat templates (llama.cpp, vLLM) refuse any other.
        system = [prompts.SYSTEM]
        if chat.memories:
            system.append(prompts.MEMORIES_HEAD + "".join(f"\n- {f}" for f in chat.memories))
        if final:
            system.append(prompts.FINAL_STEP)
        messages: ChatHistory = [
            {"role": "system", "content": "\n\n".join(system)},
            *chat.history, {"role": "user", "content": content}, *state.turns,
        ]  # fmt: skip

        writer = ReplyWriter(ctx, prefix=state.reply)
        await writer.resend_prefix()
        writer.new_round()
        calls: list[ToolCall] = []
        async for item in self.model.stream(messages, tools=None if final else self.tools):
            if isinstance(item, ToolCall):
                calls.append(item)
            else:
                await writer.add(item)
        if calls and not final:
            return await self._wait(ctx, state, writer, calls)
        if calls:
            log.warning("agent_step_limit", steps=state.step, ignored_calls=len(calls))
        if not writer.text.strip() and final:
            await writer.add(STEP_LIMIT_REPLY)
        await writer.settle()
        return await self._finish(ctx, state, content, writer.text, chat.memories)

    async def _wait(
        self, ctx: TaskContext, state: AgentState, writer: ReplyWriter, calls: list[ToolCall]
    ) -> Waiting:
        """Turn the calls into child tasks and checkpoint the round."""
        await writer.flush()
        state.step += 1
        planned = _normalised(calls[:MAX_CALLS_PER_ROUND], state.step)
        calls = [call for call, _ in planned]
        children = [self._child(ctx, c, arguments) for c, arguments in planned]
        state.turns.append(
            {
                "role": "assistant",
                "content": writer.round_text() or None,
                "tool_calls": [c.openai() for c in calls],
            }
        )
        state.pending = [
            PendingCall(call_id=c.id, name=c.name, task_id=child.task_id)
            for c, child in zip(calls, children, strict=True)
        ]
        state.reply = writer.text
        names = ", ".join(c.name for c in calls)
        await ctx.progress(
            min(0.9, state.step / (self.settings.max_agent_steps + 1)),
            stage="tools",
            message=f"waiting for {names}",
        )
        await writer.save(step=state.step, waiting_for=[c.name for c in calls])
        log.info("agent_tool_round", step=state.step, tools=names)
        return Waiting(children, state.model_dump(mode="json"))

    def _child(self, ctx: TaskContext, call: ToolCall, arguments: Any) -> NewTask:
        """A call's tool_execution task. The kernel seals its arguments (an email's body, a
        credential...) to the child's own id as it writes them."""
        tool_input = {"call_id": call.id, "name": call.name, "arguments": arguments}
        return new_task(
            self.settings,
            type=TaskType.TOOL,
            user_id=ctx.user_id,
            chat_id=ctx.chat_id,
            parent_id=ctx.task_id,
            task_id=uuid4(),
            input=tool_input,
        )

    async def _collect(self, ctx: TaskContext, state: AgentState) -> None:
        """Put the results of the calls it waited for into the conversation."""
        pending = [p.task_id for p in state.pending]
        outcomes = await child_outcomes(ctx.db, ctx.keyring, ctx.task_id, pending)
        for call in state.pending:
            outcome = outcomes.get(call.task_id)
            if outcome is not None and outcome.status not in TERMINAL:
                # Re-queued before its children ended: only a bug or a hand-made checkpoint.
                raise RetryableError(
                    f"tool call {call.call_id} is still {outcome.status}", code="tools_running"
                )
            result = tool_result(outcome)
            state.turns.append(
                {"role": "tool", "tool_call_id": call.call_id, "content": _content(result)}
            )
            summary = {"call_id": call.call_id, "name": call.name, "task_id": str(call.task_id),
                       "ok": result["ok"]}  # fmt: skip
            if not result["ok"]:
                summary["error"] = result["error"]
            state.calls.append(summary)
        state.pending = []

    async def _finish(
        self, ctx: TaskContext, state: AgentState, content: str, reply: str, known: list[str]
    ) -> TaskResult:
        output: dict[str, Any] = {"reply": reply, "model": self.model.name}
        if state.step:
            output |= {"steps": state.step, "tool_calls": state.calls}
        if self.settings.memory_extraction and reply.strip():
            memory = await remember(
                self.model,
                ctx.db,
                user_id=ctx.user_id,
                task_id=ctx.task_id,
                user_text=content,
                reply=reply,
                known=known,
                timeout_s=self.settings.memory_timeout_s,
                keyring=ctx.keyring,
            )
            # Its facts are sealed by the kernel, as memories.fact holds them
            output["memories"] = memory.output()
            if memory.warning:
                output["warnings"] = [memory.warning]
        return TaskResult(output=output, reply=reply)


def tool_result(outcome: ChildOutcome | None) -> dict[str, Any]:
    """What the model is told about a call: `{ok: true, result}` or `{ok: false, error}`."""
    if outcome is None:
        return {"ok": False, "error": {"code": "lost", "message": "the tool call's task is gone"}}
    if outcome.status == "completed":
        output = outcome.output if isinstance(outcome.output, dict) else {}
        return {"ok": True, "result": output.get("result")}
    if outcome.status == "cancelled":
        return {"ok": False, "error": {"code": "cancelled", "message": "the call was cancelled"}}
    error = outcome.error if isinstance(outcome.error, dict) else {}
    code, message = error.get("code", "failed"), error.get("message", "the tool failed")
    return {"ok": False, "error": {"code": str(code), "message": str(message)}}


def _content(result: dict[str, Any]) -> str:
    text = orjson.dumps(result).decode()
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return orjson.dumps(
        {"ok": result["ok"], "truncated": True, "result": text[:MAX_RESULT_CHARS]}
    ).decode()


def _normalised(calls: list[ToolCall], step: int) -> list[tuple[ToolCall, Any]]:
    """Each call with a unique id (each result must name its call) and its arguments.

    Arguments that are not valid JSON are repaired (counted in taskfleet_llm_json_repairs);
    what cannot be repaired into an object goes on as the raw text, and the tool-worker
    refuses it (the model is told).
    """
    seen: set[str] = set()
    out: list[tuple[ToolCall, Any]] = []
    for i, call in enumerate(calls):
        call_id = call.id if call.id and call.id not in seen else f"call_{step}_{i}"
        seen.add(call_id)
        value = loads_lenient(call.arguments)
        arguments = value if isinstance(value, dict) else call.arguments
        # Valid JSON in the history either way: a server may refuse a conversation whose
        # tool call arguments do not parse, and the error result quotes what was sent.
        text = orjson.dumps(value if isinstance(value, dict) else {}).decode()
        out.append((ToolCall(id=call_id, name=call.name, arguments=text), arguments))
    return out

"""Memory extraction after each reply (DESIGN.md §8): it never fails the reply.

The model answers a JSON list of facts; json-repair mends it, pydantic validates it; an answer
still invalid gets one corrective re-ask. The whole is bounded by MEMORY_TIMEOUT_S. Whatever
goes wrong (a timeout, JSON beyond repair, the LLM or the database failing) becomes a warning
in the task's output, and the reply completes as it is.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import orjson
import structlog
from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

from taskfleet.data.memories import MAX_FACT_CHARS, save_memories
from taskfleet.handler import Keyring, TaskError
from taskfleet.llm import ChatModel, prompts
from taskfleet.llm.jsonfix import loads_lenient
from taskfleet.llm.types import ChatHistory
from taskfleet.store.tenancy import Db

log = structlog.get_logger("chat_worker.memory")

MAX_FACTS = 20
# Enough of a long exchange for the facts in it; a model's context is not unlimited.
MAX_EXCHANGE_CHARS = 8000

Fact = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_FACT_CHARS)
]
_FACTS: TypeAdapter[list[Fact]] = TypeAdapter(Annotated[list[Fact], Field(max_length=MAX_FACTS)])


class NotAFactList(ValueError):
    """The model's answer is not a JSON list of facts, even repaired."""


@dataclass
class MemoryOutcome:
    facts: list[str] = field(default_factory=list)
    saved: int = 0
    reasked: bool = False
    warning: str | None = None

    def output(self) -> dict[str, Any]:
        """What the task's output shows under `memories` (a warning goes under `warnings`)."""
        return {"facts": self.facts, "saved": self.saved, "reasked": self.reasked}


def parse_facts(text: str) -> list[str]:
    """The facts in a model's answer; NotAFactList (with pydantic's reason) when it has none."""
    value = loads_lenient(text)
    if isinstance(value, dict):  # {"facts": [...]} is a common way to wrap the list
        value = next((value[k] for k in ("facts", "memories") if k in value), value)
    try:
        return _FACTS.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        raise NotAFactList(f"{where}: {first['msg']}") from None


async def extract(
    model: ChatModel, *, user_text: str, reply: str, known: list[str], timeout_s: float
) -> tuple[list[str], bool]:
    """Ask for the facts; re-ask once if the answer is not a fact list. (facts, reasked)."""
    exchange = {"user": user_text[:MAX_EXCHANGE_CHARS], "assistant": reply[:MAX_EXCHANGE_CHARS],
                "known": known}  # fmt: skip
    messages: ChatHistory = [
        {"role": "system", "content": prompts.MEMORY_EXTRACTION},
        {"role": "user", "content": orjson.dumps(exchange).decode()},
    ]
    async with asyncio.timeout(timeout_s):
        answer = await _answer(model, messages)
        try:
            return parse_facts(answer), False
        except NotAFactList as exc:
            log.info("memory_reask", error=str(exc))
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": prompts.MEMORY_REASK.format(error=exc)},
            ]
        return parse_facts(await _answer(model, messages)), True


async def remember(
    model: ChatModel,
    pool: Db,
    *,
    user_id: str,
    task_id: UUID,
    user_text: str,
    reply: str,
    known: list[str],
    timeout_s: float,
    keyring: Keyring,
) -> MemoryOutcome:
    """Extract and save; every failure is a warning in the outcome, never an exception."""
    outcome = MemoryOutcome()
    try:
        outcome.facts, outcome.reasked = await extract(
            model, user_text=user_text, reply=reply, known=known, timeout_s=timeout_s
        )
    except TimeoutError:
        outcome.warning = f"memory extraction timed out after {timeout_s:g}s"
    except NotAFactList as exc:
        outcome.reasked = True
        outcome.warning = f"memory extraction: no JSON list of facts after one re-ask ({exc})"
    except TaskError as exc:  # the LLM failed (retryable or not): the reply does not care
        outcome.warning = f"memory extraction failed: {exc.code}: {exc}"
    else:
        try:
            outcome.saved = await save_memories(pool, keyring, user_id, outcome.facts, task_id)
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            outcome.warning = f"memories not saved: {exc!r}"
    if outcome.warning:
        log.warning("memory_extraction_failed", warning=outcome.warning)
    return outcome


async def _answer(model: ChatModel, messages: ChatHistory) -> str:
    parts = [item async for item in model.stream(messages) if isinstance(item, str)]
    return "".join(parts)

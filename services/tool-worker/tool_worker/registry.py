"""The tool registry: a tool is an argument model, an async function, a timeout, a rate limit
and a side-effect flag (DESIGN.md §8).

`Registry.run` is the one way a tool runs: it validates the arguments, waits for the tool's
rate limit, bounds the call by its timeout and maps what goes wrong to the task error the
runner acts on (permanent: the model is told; retryable: the call runs again later).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

import aiohttp
import asyncpg
from pydantic import ValidationError

from taskfleet.core.tracing import tracer
from taskfleet.data.toolspecs import BY_NAME, ToolArgs
from taskfleet.handler import PermanentError, RetryableError, TaskError
from taskfleet.store.tenancy import Db
from tool_worker.settings import ToolWorkerSettings

A = TypeVar("A", bound=ToolArgs)


class ToolError(PermanentError):
    """The tool ran and cannot do this (division by zero, a host not allowed...)."""

    code = "tool_failed"


class ToolUnavailable(RetryableError):
    """A dependency of the tool is away. Raised only when the call surely had no effect, so a
    tool with side effects may run again (e.g. the SMTP server refused the connection)."""

    code = "tool_unavailable"


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may know: whose call it is, the process's settings, and the user's data."""

    task_id: UUID
    call_id: str
    user_id: str
    settings: ToolWorkerSettings
    db: Db  # row security: this user's rows only (TaskContext.db)


@dataclass
class RateLimit:
    """A token bucket per tool and process: `per_s` calls a second, bursts of `burst`. A call
    over the limit waits for its token (bounded by the task's deadline)."""

    per_s: float
    burst: int = 1
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _tokens: float = field(default=-1.0, repr=False)
    _at: float = field(default=0.0, repr=False)

    async def acquire(self) -> None:
        """Wait for a token and take it; the bucket starts full, with `burst` tokens."""
        while True:
            now = self.clock()
            if self._tokens < 0:
                self._tokens, self._at = float(self.burst), now
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_s)
            self._at = now
            # A hair of tolerance: clock arithmetic in floats may leave 0.999999999.
            if self._tokens >= 1 - 1e-9:
                self._tokens = max(0.0, self._tokens - 1)
                return
            await self.sleep((1 - self._tokens) / self.per_s)


@dataclass(frozen=True)
class Tool(Generic[A]):
    name: str
    args: type[A]
    fn: Callable[[A, ToolContext], Awaitable[Any]]
    timeout_s: float
    rate: RateLimit
    side_effect: bool = False
    description: str = ""

    def parse(self, arguments: Any) -> A:
        """The call's arguments as the tool's model; PermanentError `tool_invalid_arguments`,
        naming the first problems, when they do not fit (the model is told)."""
        if isinstance(arguments, str):  # the model's text could not be read as an object
            raise PermanentError(
                f"arguments of {self.name} are not a JSON object: {arguments[:200]!r}",
                code="tool_invalid_arguments",
            )
        try:
            return self.args.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:5]
            )
            raise PermanentError(
                f"invalid arguments for {self.name}: {problems}", code="tool_invalid_arguments"
            ) from None


# A dependency's failure that happened before the tool did anything it could repeat.
TRANSIENT = (OSError, aiohttp.ClientConnectionError, asyncpg.PostgresConnectionError)


@dataclass
class Registry:
    tools: dict[str, Tool[Any]] = field(default_factory=dict)

    def add(self, tool: Tool[Any]) -> None:
        """Register a tool; ValueError if its name is taken (the model calls tools by name)."""
        if tool.name in self.tools:
            raise ValueError(f"tool {tool.name} is registered twice")
        self.tools[tool.name] = tool

    def get(self, name: str) -> Tool[Any]:
        """The tool of that name; PermanentError `tool_unknown`, listing the tools there are, when
        there is none (the model is told)."""
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.tools))
            raise PermanentError(
                f"unknown tool {name[:100]!r}; tools: {known}", code="tool_unknown"
            )
        return tool

    def names(self) -> Iterable[str]:
        """The names of the registered tools (a live view)."""
        return self.tools.keys()

    async def run(self, tool: Tool[Any], args: ToolArgs, tctx: ToolContext) -> Any:
        """Run one call: rate limit, timeout, and errors mapped to retryable or permanent."""
        await tool.rate.acquire()
        try:
            async with asyncio.timeout(tool.timeout_s):
                with tracer.start_as_current_span(
                    f"tool {tool.name}",
                    attributes={"gen_ai.tool.name": tool.name, "gen_ai.tool.call.id": tctx.call_id,
                                "taskfleet.tool.side_effect": tool.side_effect},
                ):  # fmt: skip
                    return await tool.fn(args, tctx)
        except TaskError:
            raise
        except TimeoutError:
            if tool.side_effect:  # it may have acted before the timeout: never again
                raise PermanentError(
                    f"{tool.name} did not finish within {tool.timeout_s:g}s; it may have run,"
                    " so it is not run again",
                    code="tool_outcome_unknown",
                ) from None
            raise RetryableError(
                f"{tool.name} timed out after {tool.timeout_s:g}s", code="tool_timeout"
            ) from None
        except TRANSIENT as exc:
            if tool.side_effect:
                raise PermanentError(
                    f"{tool.name} failed midway: {exc!r}", code="tool_outcome_unknown"
                ) from None
            raise ToolUnavailable(f"{tool.name}: {exc!r}") from None
        except Exception as exc:  # the tool's own bug or refusal: the model is told
            raise ToolError(f"{tool.name} raised {type(exc).__name__}: {exc}") from exc


def tool(
    name: str,
    fn: Callable[[A, ToolContext], Awaitable[Any]],
    *,
    args: type[A],
    timeout_s: float,
    rate: RateLimit,
    side_effect: bool = False,
) -> Tool[A]:
    """A built-in tool: its description comes from the shared catalogue the model sees."""
    info = BY_NAME.get(name)
    return Tool(
        name=name,
        args=args,
        fn=fn,
        timeout_s=timeout_s,
        rate=rate,
        side_effect=side_effect,
        description=info.description if info else "",
    )

"""tool_worker.registry: unknown tools and invalid arguments are permanent, errors mapped,
timeouts bounded, and a side-effect tool's timeout never invites a second run."""

import asyncio
from typing import Any
from uuid import uuid4

import pytest

from taskfleet.core.errors import PermanentError, RetryableError
from taskfleet.data.toolspecs import CalculatorArgs, ToolArgs
from tool_worker.registry import RateLimit, Registry, Tool, ToolContext, ToolError
from tool_worker.settings import ToolWorkerSettings
from tool_worker.tools import default_registry
from tool_worker.web import host_allowed

CTX = ToolContext(task_id=uuid4(), call_id="c", user_id="u", settings=ToolWorkerSettings(), db=None)  # type: ignore[arg-type]


def registry() -> Registry:
    return default_registry(ToolWorkerSettings())


def test_an_unknown_tool_is_permanent_and_names_the_known_ones() -> None:
    with pytest.raises(PermanentError, match="calculator") as info:
        registry().get("rm_rf")
    assert info.value.code == "tool_unknown"


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("calculator", {}),
        ("calculator", {"expression": "1", "extra": True}),
        ("calculator", '{"expression": "1+'),
        ("send_email", {"to": [], "subject": "s", "body": ""}),
        ("send_email", {"to": ["a@b.c\nBcc: x@y.z"], "subject": "s", "body": ""}),
        ("send_email", {"to": ["a@b.c"], "subject": "s\r\nBcc: x@y.z", "body": ""}),
        ("http_get", {"url": "file:///etc/passwd"}),
        ("search_documents", {"query": ""}),
    ],
)
def test_invalid_arguments_are_permanent(name: str, arguments: Any) -> None:
    with pytest.raises(PermanentError) as info:
        registry().get(name).parse(arguments)
    assert info.value.code == "tool_invalid_arguments"


def make(fn: Any, *, side_effect: bool = False, timeout_s: float = 5) -> Tool[CalculatorArgs]:
    return Tool(
        name="t",
        args=CalculatorArgs,
        fn=fn,
        timeout_s=timeout_s,
        rate=RateLimit(per_s=100, burst=10),
        side_effect=side_effect,
    )


async def run(tool: Tool[Any]) -> Any:
    return await Registry().run(tool, CalculatorArgs(expression="1"), CTX)


async def test_a_tool_that_raises_fails_permanently_with_the_reason() -> None:
    async def explode(_: ToolArgs, __: ToolContext) -> None:
        raise RuntimeError("it blew up")

    with pytest.raises(ToolError, match="RuntimeError: it blew up") as info:
        await run(make(explode))
    assert info.value.retryable is False


@pytest.mark.parametrize(
    ("side_effect", "code", "retryable"),
    [(False, "tool_timeout", True), (True, "tool_outcome_unknown", False)],
)
async def test_a_timeout_is_retried_only_without_side_effects(
    side_effect: bool, code: str, retryable: bool
) -> None:
    async def slow(_: ToolArgs, __: ToolContext) -> None:
        await asyncio.Event().wait()

    with pytest.raises((RetryableError, PermanentError)) as info:
        await run(make(slow, side_effect=side_effect, timeout_s=0.05))
    assert (info.value.code, info.value.retryable) == (code, retryable)


async def test_a_connection_error_is_retryable_only_without_side_effects() -> None:
    async def refused(_: ToolArgs, __: ToolContext) -> None:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(RetryableError):
        await run(make(refused))
    with pytest.raises(PermanentError) as info:
        await run(make(refused, side_effect=True))
    assert info.value.code == "tool_outcome_unknown"


async def test_the_rate_limit_lets_a_burst_through_then_spaces_calls() -> None:
    clock = [1000.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:  # a virtual clock: no waiting, exact values
        sleeps.append(round(seconds, 6))
        clock[0] += seconds

    limit = RateLimit(per_s=50, burst=3, clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        await limit.acquire()
    assert sleeps == []
    await limit.acquire()
    await limit.acquire()
    assert sleeps == [0.02, 0.02]  # one token every 1/50 s once the burst is spent
    clock[0] += 10  # a quiet while refills the bucket, up to the burst only
    for _ in range(3):
        await limit.acquire()
    assert sleeps == [0.02, 0.02]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com/x", True),
        ("http://EXAMPLE.com", True),
        ("https://api.example.org/v1", True),
        ("https://example.org", True),
        ("https://evil.com", False),
        ("https://example.com.evil.com", False),
        ("https://notexample.com", False),
        ("ftp://example.com", False),
        ("https://sub.example.com", False),
    ],
)
def test_http_get_hosts(url: str, allowed: bool) -> None:
    assert host_allowed(url, ("example.com", ".example.org")) is allowed

"""Any OpenAI-compatible `/chat/completions` (OpenAI, vLLM, Ollama, llama.cpp server), streamed.

- One deadline, LLM_TIMEOUT_S, bounds the whole call: connecting, retries and their waits,
  and every read of the stream, so a server that stops sending mid-stream fails the call
  (`llm_timeout`) instead of holding the task.
- tenacity retries what fails before the reply starts (429, 5xx, 408, connection errors),
  with exponential backoff and jitter, or after Retry-After when the server says. A wait longer
  than LLM_RETRY_MAX_WAIT_S is not slept through: the call fails with that delay as its hint,
  and the task is retried later through the outbox without holding a worker.
- Once text has been handed on, a failure is not retried here (the text would be repeated);
  it fails the call and the task's own retry starts the reply again.
- Every HTTP attempt counts one `taskfleet_llm_requests_total{outcome}`; every call is measured
  by model (`measure.py`): its duration by outcome, its time to first token, and the tokens in
  and out that the server reports (`stream_options.include_usage`).
- NUL (U+0000) is dropped from what the model sends (text, tool calls): PostgreSQL cannot
  store it, and a reply that cannot be stored would fail its task at the commit.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from taskfleet.llm.measure import ABANDONED, CallMeter
from taskfleet.llm.openai_errors import counted, outcome_of, status_error
from taskfleet.llm.openai_reply import read_reply
from taskfleet.llm.types import (
    ChatHistory,
    LlmError,
    LlmRejected,
    LlmTimeout,
    LlmUnavailable,
    StreamItem,
    ToolSpec,
)

log = structlog.get_logger("taskfleet.llm")

# An error body is read for its message only.
ERROR_BODY_CHARS = 500


@dataclass
class OpenAIModel:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    max_attempts: int = 3
    max_wait_s: float = 20.0
    # Injected by tests to see the waits without sleeping through them.
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    # What the server refused with a 400 (`tools`, `stream_options`): not asked for again.
    _refused: set[str] = field(default_factory=set, repr=False)

    @property
    def name(self) -> str:
        """The model asked for (LLM_MODEL), as recorded in a chat task's output."""
        return self.model

    @property
    def url(self) -> str:
        """The chat completions endpoint under LLM_BASE_URL, whether or not it ends in a slash."""
        return self.base_url.rstrip("/") + "/chat/completions"

    async def aclose(self) -> None:
        """Close the HTTP session, if one was opened; a later stream() opens a new one."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stream(
        self, messages: ChatHistory, *, tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield the reply's text deltas as they arrive, then the tool calls it asked for.
        The call is measured: duration by outcome, time to first token, tokens."""
        meter, outcome = CallMeter(self.model), ABANDONED
        try:
            async with contextlib.aclosing(self._stream(messages, tools, meter)) as items:
                async for item in items:
                    meter.item()
                    yield item
            outcome = "ok"
        except Exception as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            meter.done(outcome)

    async def _stream(
        self, messages: ChatHistory, tools: Sequence[ToolSpec] | None, meter: CallMeter
    ) -> AsyncGenerator[StreamItem]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if "stream_options" not in self._refused:
            # The token counts, in a last chunk (OpenAI, vLLM, Ollama, llama.cpp send it).
            body["stream_options"] = {"include_usage": True}
        if tools and "tools" not in self._refused:
            body["tools"] = [t.openai() for t in tools]
            body["tool_choice"] = "auto"
        deadline = time.monotonic() + self.timeout_s
        try:
            response = await self._open(orjson.dumps(body), deadline)
        except LlmRejected as exc:
            if exc.status != 400:
                raise
            response = await self._without_what_was_refused(body, deadline, exc)
        try:
            async for item in read_reply(response, deadline, self.timeout_s, meter.usage):
                yield item
        finally:
            response.release()

    async def _without_what_was_refused(
        self, body: dict[str, Any], deadline: float, refusal: LlmRejected
    ) -> aiohttp.ClientResponse:
        """A server that does not know an optional part of the request refuses all of it
        (vLLM without --enable-auto-tool-choice refuses `tools`; an older server may refuse
        `stream_options`): ask again without one part at a time, tools first, and do not ask
        for the part it refused again in this process. No optional part: the 400 stands."""
        optional = {"tools": ("tools", "tool_choice"), "stream_options": ("stream_options",)}
        for part, keys in optional.items():
            if part not in body:
                continue
            try:
                response = await self._open(
                    orjson.dumps({k: v for k, v in body.items() if k not in keys}), deadline
                )
            except LlmRejected as exc:
                if exc.status != 400:
                    raise
                continue
            log.warning("llm_request_part_unsupported", part=part, error=str(refusal))
            self._refused.add(part)
            return response
        raise refusal

    # -- opening the response, retried --------------------------------------------------------

    async def _open(self, body: bytes, deadline: float) -> aiohttp.ClientResponse:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.timeout_s),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            sleep=self.sleep,
            before_sleep=_log_retry,
            reraise=True,
        )
        response: aiohttp.ClientResponse = await retrying(self._post, body, deadline)
        return response

    def _retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, LlmError):
            return False
        return exc.delay_s is None or exc.delay_s <= self.max_wait_s

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, LlmError) and exc.delay_s is not None:
            return exc.delay_s  # the server's Retry-After (already at most max_wait_s)
        # 0.5 s, 1 s, 2 s... capped, plus up to half a second of jitter so that workers that
        # failed together do not come back together.
        backoff = wait_exponential(multiplier=0.5, max=self.max_wait_s) + wait_random(0, 0.5)
        return min(self.max_wait_s, float(backoff(state)))

    async def _post(self, body: bytes, deadline: float) -> aiohttp.ClientResponse:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise counted(LlmTimeout(f"no reply within LLM_TIMEOUT_S={self.timeout_s:g}s"))
        try:
            async with asyncio.timeout(remaining):
                response = await self._http().post(
                    self.url, data=body, headers={"Content-Type": "application/json"}
                )
        except TimeoutError:
            raise counted(
                LlmTimeout(f"no response within LLM_TIMEOUT_S={self.timeout_s:g}s")
            ) from None
        except aiohttp.ClientError as exc:
            raise counted(LlmUnavailable(f"cannot reach the LLM: {exc!r}")) from None
        if response.status < 400:
            return response
        try:
            detail = (await response.text(errors="replace"))[:ERROR_BODY_CHARS]
        except (aiohttp.ClientError, TimeoutError):
            detail = ""
        finally:
            response.release()
        raise counted(status_error(response.status, response.headers, detail))

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the worker's event loop; closed by aclose().
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else None
    log.warning("llm_retry", attempt=state.attempt_number, error=repr(exc), wait_s=wait)

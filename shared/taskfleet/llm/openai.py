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
- Every HTTP attempt counts one `taskfleet_llm_requests_total{outcome}`.
- NUL (U+0000) is dropped from what the model sends (text, tool calls): PostgreSQL cannot
  store it, and a reply that cannot be stored would fail its task at the commit.
"""

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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

from taskfleet.core.metrics import LLM_REQUESTS
from taskfleet.llm.sse import SseParser, ToolCallAssembler
from taskfleet.llm.types import (
    ChatHistory,
    LlmBadResponse,
    LlmError,
    LlmRateLimited,
    LlmRejected,
    LlmServerError,
    LlmTimeout,
    LlmUnavailable,
    StreamItem,
    ToolSpec,
    without_nul,
)

log = structlog.get_logger("taskfleet.llm")

# An error body is read for its message only; a JSON reply (no streaming) may be large.
ERROR_BODY_CHARS = 500
MAX_JSON_REPLY_BYTES = 8 * 1024 * 1024


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
    _tools_supported: bool = field(default=True, repr=False)

    @property
    def name(self) -> str:
        return self.model

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stream(
        self, messages: ChatHistory, *, tools: Sequence[ToolSpec] | None = None
    ) -> AsyncIterator[StreamItem]:
        """Yield the reply's text deltas as they arrive, then the tool calls it asked for."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if tools and self._tools_supported:
            body["tools"] = [t.openai() for t in tools]
            body["tool_choice"] = "auto"
        deadline = time.monotonic() + self.timeout_s
        try:
            response = await self._open(orjson.dumps(body), deadline)
        except LlmRejected as exc:
            if "tools" not in body or exc.status != 400:
                raise
            # A server started without tool support (vLLM without --enable-auto-tool-choice,
            # some llama.cpp builds) refuses the whole request: answer without tools, and do
            # not offer them again in this process.
            log.warning("llm_tools_unsupported", error=str(exc))
            self._tools_supported = False
            del body["tools"], body["tool_choice"]
            response = await self._open(orjson.dumps(body), deadline)
        try:
            async for item in self._read(response, deadline):
                yield item
        finally:
            response.release()

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
            raise _counted(LlmTimeout(f"no reply within LLM_TIMEOUT_S={self.timeout_s:g}s"))
        try:
            async with asyncio.timeout(remaining):
                response = await self._http().post(
                    self.url, data=body, headers={"Content-Type": "application/json"}
                )
        except TimeoutError:
            raise _counted(
                LlmTimeout(f"no response within LLM_TIMEOUT_S={self.timeout_s:g}s")
            ) from None
        except aiohttp.ClientError as exc:
            raise _counted(LlmUnavailable(f"cannot reach the LLM: {exc!r}")) from None
        if response.status < 400:
            return response
        try:
            detail = (await response.text(errors="replace"))[:ERROR_BODY_CHARS]
        except (aiohttp.ClientError, TimeoutError):
            detail = ""
        finally:
            response.release()
        raise _counted(_status_error(response.status, response.headers, detail))

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use, inside the worker's event loop; closed by aclose().
        if self._session is None or self._session.closed:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session

    # -- reading the reply --------------------------------------------------------------------

    async def _read(
        self, response: aiohttp.ClientResponse, deadline: float
    ) -> AsyncIterator[StreamItem]:
        try:
            if response.content_type == "application/json":  # the server ignored `stream`
                items = self._read_json(response, deadline)
            else:
                items = self._read_stream(response, deadline)
            async for item in items:
                if cleaned := without_nul(item):  # a delta of NUL alone is no delta
                    yield cleaned
        except LlmError as exc:
            raise _counted(exc) from None
        except aiohttp.ClientError as exc:
            raise _counted(LlmUnavailable(f"the LLM's stream broke: {exc!r}")) from None
        LLM_REQUESTS.labels("ok").inc()

    async def _read_stream(
        self, response: aiohttp.ClientResponse, deadline: float
    ) -> AsyncIterator[StreamItem]:
        parser, calls = SseParser(), ToolCallAssembler()
        done = finished = False
        while not done:
            chunk = await self._within(response.content.readany(), deadline)
            events = parser.feed(chunk) if chunk else parser.close()
            for data in events:
                if data.strip() == "[DONE]":
                    done = True
                    break
                for text in _apply(_event(data), calls):
                    if text is None:
                        finished = True
                    else:
                        yield text
            if not chunk:
                break
        if not (done or finished):
            raise LlmBadResponse("the stream ended before the reply did")
        for call in calls.calls():
            yield call

    async def _read_json(
        self, response: aiohttp.ClientResponse, deadline: float
    ) -> AsyncIterator[StreamItem]:
        raw = await self._within(response.content.read(MAX_JSON_REPLY_BYTES), deadline)
        try:
            choice = orjson.loads(raw)["choices"][0]
            message = choice["message"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise LlmBadResponse("the reply is not a chat completion") from None
        calls = ToolCallAssembler()
        if message.get("tool_calls"):
            calls.add(message["tool_calls"])
        if isinstance(message.get("content"), str) and message["content"]:
            yield message["content"]
        for call in calls.calls():
            yield call

    async def _within(self, read: Awaitable[bytes], deadline: float) -> bytes:
        """One read, bounded by what is left of the call's deadline (a stall fails here).

        The timeout wraps the read only, never a `yield`: a timeout around a yield would
        cancel whatever the consumer is doing at that moment instead.
        """
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                return await read
        except TimeoutError:
            if asyncio.iscoroutine(read):
                read.close()
            raise LlmTimeout(
                f"the reply did not finish within LLM_TIMEOUT_S={self.timeout_s:g}s"
            ) from None


def _event(data: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise LlmBadResponse(f"a stream event is not JSON: {data[:100]!r}") from None
    if not isinstance(event, dict):
        raise LlmBadResponse("a stream event is not an object")
    if "error" in event:  # some servers report a failure inside a 200 stream
        raise LlmServerError(f"the LLM failed mid-stream: {str(event['error'])[:300]}")
    return event


def _apply(event: dict[str, Any], calls: ToolCallAssembler) -> list[str | None]:
    """Text deltas of the event's first choice, and None where the choice finished."""
    out: list[str | None] = []
    for choice in (event.get("choices") or [])[:1]:
        delta = choice.get("delta") or {}
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(content)
        if delta.get("tool_calls"):
            calls.add(delta["tool_calls"])
        if choice.get("finish_reason"):
            out.append(None)
    return out


def _status_error(status: int, headers: Any, detail: str) -> Exception:
    message = f"LLM answered HTTP {status}: {detail}".strip()
    if status == 429:
        return LlmRateLimited(message, delay_s=retry_after(headers.get("Retry-After")))
    if status >= 500 or status == 408:
        return LlmServerError(message, delay_s=retry_after(headers.get("Retry-After")))
    return LlmRejected(message, status=status)


def retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_OUTCOME_OF = {
    LlmRateLimited: "rate_limited", LlmServerError: "server_error", LlmTimeout: "timeout",
    LlmUnavailable: "connection_error", LlmRejected: "rejected", LlmBadResponse: "bad_response",
}  # fmt: skip


def _counted(exc: Exception) -> Exception:
    LLM_REQUESTS.labels(_OUTCOME_OF.get(type(exc), "bad_response")).inc()
    return exc


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else None
    log.warning("llm_retry", attempt=state.attempt_number, error=repr(exc), wait_s=wait)

"""What a failed attempt at an OpenAI-compatible server becomes: an LlmError by HTTP status
(with the server's Retry-After as its delay), counted once in `taskfleet_llm_requests_total`."""

import email.utils
import time
from typing import Any

from taskfleet.core.metrics import LLM_REQUESTS
from taskfleet.llm.types import (
    LlmBadResponse,
    LlmRateLimited,
    LlmRejected,
    LlmServerError,
    LlmTimeout,
    LlmUnavailable,
)


def status_error(status: int, headers: Any, detail: str) -> Exception:
    """The LlmError for an HTTP error answer: 429, 408 and 5xx retry (after Retry-After if sent);
    any other status is LlmRejected, which fails the task."""
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


def outcome_of(exc: BaseException) -> str:
    """The outcome label of a failed call or attempt (`rate_limited`, `timeout`, ...)."""
    return _OUTCOME_OF.get(type(exc), "bad_response")


def counted(exc: Exception) -> Exception:
    """Count `exc` in taskfleet_llm_requests_total by outcome; it is returned, to be raised."""
    LLM_REQUESTS.labels(outcome_of(exc)).inc()
    return exc

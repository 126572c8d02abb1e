"""What the client raises: the API's error body as an exception, and the answers worth
sending again (429, 503), with the Retry-After the server asked for."""

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from tenacity import RetryCallState

from taskfleet.client.models import ErrorBody

# A server that does not say how long: the client's own backoff decides.
RETRYABLE_STATUSES = frozenset({429, 503})
RETRY_AFTER_MAX_S = 60.0


class TaskfleetError(Exception):
    """An error answer of the API: its status and `{"error": {code, message, details}}`."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


class RetryableError(TaskfleetError):
    """429 or 503: retried (honouring `retry_after`) until the client's attempts run out."""

    def __init__(
        self, status: int, code: str, message: str, details: Any, retry_after: float | None
    ) -> None:
        super().__init__(status, code, message, details)
        self.retry_after = retry_after


def error_of(status: int, body: bytes, retry_after: str | None) -> TaskfleetError:
    """The exception for an error answer; a body that is not the API's names the status."""
    try:
        error = ErrorBody.model_validate_json(body).error
        code, message, details = error.code, error.message, error.details
    except ValidationError:
        code, message, details = f"http_{status}", body[:200].decode(errors="replace"), None
    if status in RETRYABLE_STATUSES:
        return RetryableError(status, code, message, details, _seconds(retry_after))
    return TaskfleetError(status, code, message, details)


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds (the API sends seconds; an HTTP date is left to the backoff)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def retry_after_or(
    backoff: Callable[[RetryCallState], float],
) -> Callable[[RetryCallState], float]:
    """Wait what the server's Retry-After says (capped), else the backoff."""

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return min(error.retry_after, RETRY_AFTER_MAX_S)
        return backoff(state)

    return wait

"""taskfleet.core.retry: capped exponential backoff with jitter, and the retry decision."""

import pytest

from taskfleet.core.errors import (
    InvalidPayload,
    PermanentError,
    RetryableError,
    TaskError,
    unexpected,
)
from taskfleet.core.retry import Backoff, decide

SAMPLES = 500


def samples(backoff: Backoff, attempt: int) -> list[float]:
    return [backoff.delay(attempt) for _ in range(SAMPLES)]


def test_delay_grows_strictly_with_attempt_until_the_cap() -> None:
    backoff = Backoff(base_s=1.0, max_s=60.0)
    attempt = 1
    # base·2^(attempt-1) stays under the cap up to attempt 6 (32 s); 7 would be 64 s.
    while backoff.base_s * 2**attempt < backoff.max_s:
        assert max(samples(backoff, attempt)) < min(samples(backoff, attempt + 1))
        attempt += 1
    assert attempt == 6


@pytest.mark.parametrize("attempt", [1, 2, 5, 6, 7, 8, 20, 100])
def test_delay_is_positive_and_never_above_the_cap(attempt: int) -> None:
    backoff = Backoff(base_s=1.0, max_s=60.0)
    for delay in samples(backoff, attempt):
        assert 0 < delay <= backoff.max_s


def test_delay_at_the_cap_stays_near_the_cap() -> None:
    backoff = Backoff(base_s=2.0, max_s=10.0)
    for delay in samples(backoff, 30):
        assert 0.75 * 10.0 <= delay <= 10.0


def test_delay_has_jitter() -> None:
    assert len(set(samples(Backoff(base_s=1.0, max_s=60.0), 3))) > 1


BACKOFF = Backoff(base_s=1.0, max_s=30.0)


def test_permanent_error_is_not_retried() -> None:
    for error in (PermanentError("bad input"), InvalidPayload("no content")):
        decision = decide(error, attempt=1, max_attempts=5, backoff=BACKOFF)
        assert decision.retry is False
        assert decision.reason.startswith("permanent")
        assert error.code in decision.reason


@pytest.mark.parametrize(
    "error", [RetryableError("503"), TaskError("generic"), unexpected(KeyError("k"))]
)
def test_retryable_error_with_attempts_left_is_retried_after_a_delay(error: TaskError) -> None:
    decision = decide(error, attempt=2, max_attempts=5, backoff=BACKOFF)
    assert decision.retry is True
    assert 0 < decision.delay_s <= BACKOFF.max_s
    # attempt 2: base·2 = 2 s, jittered into [1.5, 2]
    assert 1.5 <= decision.delay_s <= 2.0


@pytest.mark.parametrize("attempt", [5, 6])
def test_no_retry_at_max_attempts(attempt: int) -> None:
    decision = decide(RetryableError("503"), attempt=attempt, max_attempts=5, backoff=BACKOFF)
    assert decision.retry is False
    assert decision.reason.startswith("max_attempts")


def test_last_attempt_before_max_is_still_retried() -> None:
    decision = decide(RetryableError("503"), attempt=4, max_attempts=5, backoff=BACKOFF)
    assert decision.retry is True


def test_delay_hint_is_honoured() -> None:
    error = RetryableError("429", delay_s=7.0)
    decision = decide(error, attempt=1, max_attempts=5, backoff=BACKOFF)
    assert decision.retry is True
    assert decision.delay_s == 7.0


def test_delay_hint_is_capped_at_max_s() -> None:
    error = RetryableError("429", delay_s=3600.0)
    decision = decide(error, attempt=1, max_attempts=5, backoff=BACKOFF)
    assert decision.retry is True
    assert decision.delay_s == BACKOFF.max_s


def test_delay_hint_does_not_override_max_attempts() -> None:
    error = RetryableError("429", delay_s=1.0)
    decision = decide(error, attempt=5, max_attempts=5, backoff=BACKOFF)
    assert decision.retry is False

"""The retry decision, in one place: which error retries, after how long, and when to give up."""

import random
from dataclasses import dataclass

from taskfleet.core.errors import RetryableError, TaskError


@dataclass(frozen=True, slots=True)
class Backoff:
    """`base·2^(attempt-1)`, capped at `max_s`, times a jitter in [0.75, 1].

    The jitter only ever shortens a delay by a quarter, so successive delays still grow
    (until the cap) while replicas that failed together do not retry in lockstep.
    """

    base_s: float
    max_s: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt `attempt` (1 is the first)."""
        raw = min(self.max_s, self.base_s * 2.0 ** max(0, attempt - 1))
        return raw * random.uniform(0.75, 1.0)


@dataclass(frozen=True, slots=True)
class Decision:
    retry: bool
    delay_s: float = 0.0
    reason: str = ""


def decide(error: TaskError, *, attempt: int, max_attempts: int, backoff: Backoff) -> Decision:
    """Retry a retryable error while attempts remain; otherwise fail and dead-letter."""
    if not error.retryable:
        return Decision(retry=False, reason=f"permanent: {error.code}")
    if attempt >= max_attempts:
        return Decision(retry=False, reason=f"max_attempts: {error.code}")
    hint = error.delay_s if isinstance(error, RetryableError) else None
    delay = backoff.delay(attempt) if hint is None else min(max(0.0, hint), backoff.max_s)
    return Decision(retry=True, delay_s=delay)

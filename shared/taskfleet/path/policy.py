"""What a queue's defaults (core.constants.QUEUES) become under this process's settings."""

import asyncio
import contextlib
from collections.abc import Iterator
from uuid import UUID

from taskfleet.core.constants import QueueSpec
from taskfleet.core.retry import Backoff
from taskfleet.core.settings import Settings
from taskfleet.store.records import ClaimPolicy, Preload


def deadline_s(settings: Settings, spec: QueueSpec) -> float:
    """A queue's deadline in seconds: TASK_DEADLINE_S when set, else the queue's own."""
    return settings.task_deadline_s or spec.deadline_s


def backoff(settings: Settings, spec: QueueSpec) -> Backoff:
    """A queue's retry backoff: RETRY_BASE_S and RETRY_MAX_S when set, else the queue's own."""
    return Backoff(
        settings.retry_base_s or spec.retry_base_s, settings.retry_max_s or spec.retry_max_s
    )


def claim_policy(
    settings: Settings, spec: QueueSpec, preload: Preload | None, holder: UUID
) -> ClaimPolicy:
    """The claim rules of a queue under these settings, for claims held by worker `holder`."""
    return ClaimPolicy(
        max_attempts=settings.max_attempts or spec.max_attempts,
        user_limit=settings.user_concurrency,
        throttle_s=settings.throttle_delay_s,
        preload=preload,
        holder=holder,
        deadline_s=deadline_s(settings, spec),
    )


class Busy:
    """The deliveries a consumer took and has not settled yet: a stop waits for them."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        """Count one delivery as busy while the block runs, so a stop waits for it."""
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    def count(self) -> int:
        """The deliveries busy now."""
        return self._count

    async def wait_idle(self, timeout_s: float) -> bool:
        """Whether none was left within `timeout_s`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

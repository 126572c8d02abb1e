"""The memory guard of a worker: it protects itself instead of being OOM-killed.

Every MEMORY_CHECK_S the worker reads its resident memory. Above MEMORY_SOFT_LIMIT_MB it takes
no new deliveries (the consumer is cancelled, prefetched messages handed back) until it is
back under 90 % of the soft limit. Above MEMORY_HARD_LIMIT_MB it stops as on SIGTERM:
in-flight tasks finish within the grace or are handed back, and the process exits with
EXIT_MEMORY so that its supervisor (`taskfleet up`, Kubernetes) starts a fresh one.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from taskfleet.core.metrics import MEMORY_PAUSED, RESIDENT_BYTES

log = structlog.get_logger("taskfleet.memguard")

EXIT_MEMORY = 75  # EX_TEMPFAIL: try again (a fresh process)
RESUME_BELOW = 0.9  # of the soft limit: no flapping around it
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size, from /proc (no syscall-heavy library needed)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


@dataclass
class MemoryGuard:
    soft_bytes: int  # 0: never pause
    hard_bytes: int  # 0: never stop
    check_s: float
    pause: Callable[[str], Awaitable[None]]
    resume: Callable[[], Awaitable[None]]
    stop: asyncio.Event
    queue: str
    paused: bool = False
    stopped_for_memory: bool = False

    async def run(self) -> None:
        """A worker's supervised loop."""
        while True:
            await self.check(resident_bytes())
            await asyncio.sleep(self.check_s)

    async def check(self, rss: int) -> None:
        """Act on one reading `rss` (bytes): stop over the hard limit, pause over the soft one,
        and resume once back under RESUME_BELOW of it."""
        RESIDENT_BYTES.set(rss)
        if self.hard_bytes and rss > self.hard_bytes and not self.stopped_for_memory:
            self.stopped_for_memory = True
            log.error("memory_hard_limit", rss_mb=rss >> 20, limit_mb=self.hard_bytes >> 20)
            self.stop.set()
        elif self.soft_bytes and rss > self.soft_bytes and not self.paused:
            self.paused = True
            MEMORY_PAUSED.labels(self.queue).set(1)
            await self.pause(f"resident memory {rss >> 20} MiB over {self.soft_bytes >> 20} MiB")
        elif self.paused and rss < self.soft_bytes * RESUME_BELOW:
            self.paused = False
            MEMORY_PAUSED.labels(self.queue).set(0)
            await self.resume()

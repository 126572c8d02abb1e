"""The owner of every background asyncio task: nothing is fire-and-forget.

A supervised task that raises is logged with its traceback, counted in
`taskfleet_background_task_failures_total{name}` and, if it is a service loop, restarted
with exponential backoff. The backoff counts failures in a row: a run that lasted a healthy
while (HEALTHY_RUN_S) starts it afresh, so a loop that failed ten times over a week is
restarted after a second, not after the cap. `aclose()` cancels all of them and waits for
them to end.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from taskfleet.core.metrics import BACKGROUND_FAILURES

log = structlog.get_logger("taskfleet.supervisor")

CoroFactory = Callable[[], Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A run at least this long was healthy: a failure after it is the first in a row again.
HEALTHY_RUN_S = 60.0


@dataclass
class RestartBackoff:
    """The wait before restarting something that stopped (a supervised loop, a child process
    of `taskfleet up`): 1 s, 2 s, 4 s... up to `max_s` while it keeps failing soon after each
    start, and 1 s again after a run of `healthy_s` or more."""

    max_s: float = 30.0
    healthy_s: float = HEALTHY_RUN_S
    clock: Clock = time.monotonic
    failures: int = 0  # in a row
    _started_at: float = 0.0

    def started(self) -> None:
        """Note when a run starts, so `ended()` can tell a healthy run from a quick failure."""
        self._started_at = self.clock()

    def ended(self, *, failed: bool) -> float:
        """Note the end of the run started last; the delay before the next one."""
        if self.clock() - self._started_at >= self.healthy_s:
            self.failures = 0
        if failed:
            self.failures += 1
        return min(self.max_s, 0.5 * 2.0 ** min(self.failures, 10))


@dataclass
class _Child:
    name: str
    factory: CoroFactory
    restart: bool
    kind: str  # the metric label: one per kind of task, not per task
    backoff: RestartBackoff
    task: asyncio.Task[None] | None = None


@dataclass
class Supervisor:
    """Runs named coroutines; restarts service loops after a failure, with backoff."""

    name: str = "supervisor"
    max_backoff_s: float = 30.0
    healthy_s: float = HEALTHY_RUN_S
    # Injected by tests, to see the backoff without waiting through it.
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep
    _children: dict[str, _Child] = field(default_factory=dict)
    _closing: bool = False

    def spawn(
        self, name: str, factory: CoroFactory, *, restart: bool = True, kind: str | None = None
    ) -> asyncio.Task[None]:
        """Start `factory()` as task `name`; with restart, a crash or early return restarts it.

        `kind` labels its failures in the metric when names are many (one per connection).
        """
        if self._closing:
            raise RuntimeError(f"{self.name} is closing; cannot start {name}")
        if self.running().get(name):
            raise RuntimeError(f"task {name} is already running")
        backoff = RestartBackoff(self.max_backoff_s, self.healthy_s, self.clock)
        child = _Child(name, factory, restart, kind or name, backoff)
        self._children[name] = child
        self._start(child)
        assert child.task is not None
        return child.task

    async def stop(self, name: str) -> None:
        """Cancel one task for good (its owner is going away) and wait for it to end."""
        child = self._children.pop(name, None)
        if child is not None and child.task is not None and not child.task.done():
            child.task.cancel()
            await asyncio.wait([child.task], timeout=10)

    def running(self) -> dict[str, bool]:
        """name -> alive, for health checks."""
        return {n: c.task is not None and not c.task.done() for n, c in self._children.items()}

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Cancel every task, refuse new ones, and wait up to `timeout_s` seconds for them to end.

        A task still running after that is logged as stuck, not waited for.
        """
        self._closing = True
        tasks = [c.task for c in self._children.values() if c.task and not c.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                log.error("background_task_stuck", task=task.get_name())

    def _start(self, child: _Child, delay_s: float = 0.0) -> None:
        if self._closing:
            return
        child.task = asyncio.get_running_loop().create_task(
            self._run(child, delay_s), name=f"{self.name}:{child.name}"
        )

    async def _run(self, child: _Child, delay_s: float) -> None:
        if delay_s:
            await self.sleep(delay_s)
        child.backoff.started()
        try:
            await child.factory()
        except asyncio.CancelledError:
            raise
        except Exception:
            backoff = child.backoff.ended(failed=True)
            BACKGROUND_FAILURES.labels(child.kind).inc()
            log.exception(
                "background_task_failed", task=child.name, failures=child.backoff.failures
            )
        else:
            if not child.restart:
                return
            backoff = child.backoff.ended(failed=False)
            log.warning("background_task_returned", task=child.name)
        if child.restart and not self._closing:
            # The replacement is started from the done callback of this one, so it is still owned.
            asyncio.get_running_loop().call_soon(self._start, child, backoff)

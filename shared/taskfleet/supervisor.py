"""The owner of every background asyncio task: nothing is fire-and-forget.

A supervised task that raises is logged with its traceback, counted in
`taskfleet_background_task_failures_total{name}` and, if it is a service loop, restarted
with exponential backoff. `aclose()` cancels all of them and waits for them to end.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from taskfleet.metrics import BACKGROUND_FAILURES

log = structlog.get_logger("taskfleet.supervisor")

CoroFactory = Callable[[], Awaitable[None]]


@dataclass
class _Child:
    name: str
    factory: CoroFactory
    restart: bool
    kind: str  # the metric label: one per kind of task, not per task
    task: asyncio.Task[None] | None = None
    failures: int = 0


@dataclass
class Supervisor:
    """Runs named coroutines; restarts service loops after a failure, with backoff."""

    name: str = "supervisor"
    max_backoff_s: float = 30.0
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
        child = _Child(name, factory, restart, kind or name)
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
            await asyncio.sleep(delay_s)
        try:
            await child.factory()
        except asyncio.CancelledError:
            raise
        except Exception:
            child.failures += 1
            BACKGROUND_FAILURES.labels(child.kind).inc()
            log.exception("background_task_failed", task=child.name, failures=child.failures)
        else:
            if not child.restart:
                return
            log.warning("background_task_returned", task=child.name)
        if child.restart and not self._closing:
            backoff = min(self.max_backoff_s, 0.5 * 2 ** min(child.failures, 10))
            # The replacement is started from the done callback of this one, so it is still owned.
            asyncio.get_running_loop().call_soon(self._start, child, backoff)

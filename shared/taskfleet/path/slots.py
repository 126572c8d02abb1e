"""A worker's slots (deliveries it runs at once), adapted at run time to the work it is given.

How many slots are right depends on the work, not on the worker: a chat task that waits five
seconds on its model holds a slot and no CPU, so one process can run hundreds of them, while
the scripted model of W1 makes the same process CPU-bound at a few dozen. Unless an operator
fixes the number (`--concurrency`, WORKER_CONCURRENCY), a worker starts at its queue's own
slots (`QueueSpec.concurrency`) and a `Governor` adjusts them between that and the queue's
`max_concurrency`, reading every WINDOW_S:

- demand: the share of its ticks at which every allowed slot was busy while deliveries
  already given to this worker waited for one;
- the event loop's lag: how late a timer of the loop fired (its worst in the window);
- the process's CPU (seconds a second, its threads included).

Work waits and the loop has room: half as many slots again (64 to 256 in four windows). The
loop is late or the CPU is spent: a quarter fewer, down to the queue's own. No demand for
IDLE_WINDOWS windows in a row: a quarter fewer too, so an idle worker does not keep a large
prefetch that other replicas could serve. The prefetch follows the slots (twice them, as at start).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("taskfleet.slots")

WINDOW_S = 1.0
TICK_S = 0.05
LAG_LOW_S = 0.02  # below this the loop has room for more tasks
LAG_HIGH_S = 0.1  # above this every task on the loop is held up
CPU_LOW = 0.6  # of one core: a process is one event loop
CPU_HIGH = 0.9
DEMAND = 0.5  # of the window's ticks
IDLE_WINDOWS = 10


@dataclass(frozen=True)
class SlotRange:
    """The slots a worker starts with (`low`) and may grow to (`high`); fixed when equal."""

    low: int
    high: int

    @property
    def adaptive(self) -> bool:
        """Whether the governor may change them."""
        return self.high > self.low

    @classmethod
    def fixed(cls, slots: int) -> "SlotRange":
        """Always `slots` (an operator's number)."""
        return cls(slots, slots)


@dataclass(frozen=True)
class Reading:
    """One window of what the governor watches."""

    demand: float  # share of ticks with every allowed slot busy and deliveries waiting
    lag_s: float  # the loop's worst lateness
    cpu: float  # the process's CPU seconds a second
    busy_peak: int  # the most slots busy at a tick


def decide(allowed: int, slots: SlotRange, reading: Reading, idle_windows: int) -> int:
    """The slots to allow after `reading` (`idle_windows`: windows in a row without demand,
    this one included)."""
    step = max(1, allowed // 4)
    if reading.lag_s > LAG_HIGH_S or reading.cpu > CPU_HIGH:
        return max(slots.low, allowed - step)
    if reading.demand >= DEMAND and reading.lag_s < LAG_LOW_S and reading.cpu < CPU_LOW:
        return min(slots.high, allowed + max(1, allowed // 2))
    if idle_windows >= IDLE_WINDOWS and reading.busy_peak <= allowed - step:
        return max(slots.low, allowed - step)
    return allowed


class Slots:
    """How many of a consumer's handler loops may take a delivery now: loop `i` waits for
    its turn while `i` is not below `allowed`. A loop that has a delivery finishes it first,
    so fewer slots never cut a task short."""

    def __init__(self, slots: SlotRange) -> None:
        self.range = slots
        self.allowed = slots.low
        self._changed = asyncio.Event()

    async def turn(self, index: int) -> None:
        """Return once loop `index` may take a delivery."""
        while index >= self.allowed:
            await self._changed.wait()

    def allow(self, allowed: int) -> None:
        """Let loops below `allowed` take deliveries from now on."""
        self.allowed = allowed
        # Waiters hold the old event: wake them and give the next ones a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()


@dataclass
class Governor:
    """The loop that reads a window and resizes (owned by the kernel's supervisor)."""

    slots: Slots
    busy: Callable[[], int]  # deliveries in flight now
    waiting: Callable[[], int]  # deliveries given to this worker and not started
    resize: Callable[[int], Awaitable[None]]
    queue: str
    window_s: float = WINDOW_S
    tick_s: float = TICK_S

    async def run(self) -> None:
        """Read a window, decide, resize; for ever."""
        idle = 0
        while True:
            reading = await self.read()
            idle = 0 if reading.demand or reading.busy_peak else idle + 1
            allowed = decide(self.slots.allowed, self.slots.range, reading, idle)
            if allowed != self.slots.allowed:
                log.info(
                    "slots_changed",
                    queue=self.queue,
                    slots=allowed,
                    was=self.slots.allowed,
                    demand=round(reading.demand, 2),
                    lag_ms=round(reading.lag_s * 1000, 1),
                    cpu=round(reading.cpu, 2),
                )
                await self.resize(allowed)

    async def read(self) -> Reading:
        """Tick through one window, noting demand, lateness and peak use; then the CPU."""
        ticks = demanded = peak = 0
        lag = 0.0
        cpu_before, started = time.process_time(), time.monotonic()
        while (now := time.monotonic()) - started < self.window_s:
            await asyncio.sleep(self.tick_s)
            lag = max(lag, time.monotonic() - now - self.tick_s)
            busy = self.busy()
            ticks += 1
            peak = max(peak, busy)
            if busy >= self.slots.allowed and self.waiting() > 0:
                demanded += 1
        spent = time.monotonic() - started
        cpu = (time.process_time() - cpu_before) / spent
        return Reading(demanded / max(ticks, 1), lag, cpu, peak)

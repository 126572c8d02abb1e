"""`taskfleet worker NAME`: one work queue, its handler, health and metrics, graceful stop."""

import asyncio
from collections.abc import Callable

import structlog
from aiohttp import web

from taskfleet.core.constants import QueueSpec
from taskfleet.core.errors import MemoryExhausted
from taskfleet.core.metrics import WORKER_SLOTS
from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import CoroFactory
from taskfleet.path.consumer import Consumer, Handler
from taskfleet.path.slots import SlotRange
from taskfleet.runtime.health import add_health_routes, add_metrics_route, database_check, serve
from taskfleet.runtime.kernel import Kernel, open_kernel, stop_event_on_signals
from taskfleet.runtime.memguard import MemoryGuard
from taskfleet.store.records import Preload

log = structlog.get_logger("taskfleet.worker")

HandlerFactory = Callable[[Kernel], Handler]
# A service's own background loops (name, factory), owned by the kernel's supervisor.
BackgroundFactory = Callable[[Kernel], list[tuple[str, CoroFactory]]]
# Slots past these share the database pool: claims and completions go batched, one statement
# at a time (store/coalesce.py), so more connections add nothing. W1 with 64 slots ran the
# same on 36 connections as on 68 (docs/benchmarks.md, "Starting at 64 slots").
POOLED_SLOTS = 32


def pool_size(settings: Settings, slots: SlotRange) -> int:
    """A worker's database connections: DB_POOL_SIZE, or more for its first POOLED_SLOTS slots
    and 4 for the relay, the cancel poll and the heartbeats (a slot waiting on its model holds
    none)."""
    return max(settings.db_pool_size, min(slots.low, POOLED_SLOTS) + 4)


async def run_worker(
    settings: Settings,
    spec: QueueSpec,
    make_handler: HandlerFactory,
    *,
    slots: SlotRange,
    stop: asyncio.Event | None = None,
    background: BackgroundFactory | None = None,
    preload: Preload | None = None,
) -> None:
    """Run until `stop` (default: SIGTERM/SIGINT) is set, then stop within SHUTDOWN_GRACE_S."""
    stop = stop or stop_event_on_signals()
    size = pool_size(settings, slots)
    async with open_kernel(settings, name=f"{spec.worker}-worker", pool_size=size) as kernel:
        consumer = Consumer(
            settings=settings,
            spec=spec,
            handler=make_handler(kernel),
            store=kernel.store,
            broker=kernel.broker,
            supervisor=kernel.supervisor,
            concurrency=slots.low,
            max_concurrency=slots.high,
            preload=preload,
        )
        await consumer.start()
        for name, factory in background(kernel) if background else []:
            kernel.supervisor.spawn(name, factory)
        guard = MemoryGuard(
            soft_bytes=settings.memory_soft_limit_mb << 20,
            hard_bytes=settings.memory_hard_limit_mb << 20,
            check_s=settings.memory_check_s,
            pause=consumer.pause,
            resume=consumer.resume,
            stop=stop,
            queue=spec.name,
        )
        kernel.supervisor.spawn("memory-guard", guard.run)
        db_ok = database_check(kernel.pool)

        async def ready() -> dict[str, bool]:
            return {
                "database": await db_ok(),
                "broker": kernel.broker.ready,
                "consuming": consumer.consuming,
            }

        app = web.Application()
        add_health_routes(app, ready, why=lambda: consumer.pause_reasons)
        add_metrics_route(app)
        port = settings.metrics_port if settings.metrics_port is not None else spec.metrics_port
        runner = await serve(app, "0.0.0.0", port, setting="METRICS_PORT")
        bound = runner.addresses[0][1] if runner.addresses else port
        WORKER_SLOTS.labels(spec.name).set(consumer.slots)  # utilisation = inflight / slots
        log.info(
            "worker_started",
            queue=consumer.queue,
            concurrency=consumer.slots,
            max_concurrency=slots.high,
            metrics_port=bound,
        )
        try:
            await stop.wait()
            log.info("worker_stopping", inflight=len(consumer.inflight))
            await consumer.stop(settings.shutdown_grace_s)
        finally:
            await runner.cleanup()
        log.info("worker_stopped")
    if guard.stopped_for_memory:
        raise MemoryExhausted(
            f"resident memory over MEMORY_HARD_LIMIT_MB={settings.memory_hard_limit_mb}"
        )

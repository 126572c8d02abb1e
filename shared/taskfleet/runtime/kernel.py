"""The dependencies every process shares, built once at start inside its lifespan."""

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog

from taskfleet.broker.connection import Broker
from taskfleet.broker.outbox import OutboxRelay
from taskfleet.core.errors import StartupError
from taskfleet.core.settings import Settings
from taskfleet.core.supervisor import Supervisor
from taskfleet.runtime.reconciler import Reconciler
from taskfleet.security.crypto import Keyring
from taskfleet.store.pool import create_pool, export_pool_use
from taskfleet.store.tasks import TaskStore

log = structlog.get_logger("taskfleet.kernel")


@dataclass(frozen=True, slots=True)
class Kernel:
    settings: Settings
    pool: asyncpg.Pool
    store: TaskStore
    broker: Broker
    supervisor: Supervisor

    @property
    def keyring(self) -> Keyring:
        """The keys that seal and open sensitive fields (built once per settings)."""
        return Keyring.from_settings(self.settings)


@asynccontextmanager
async def open_kernel(
    settings: Settings,
    *,
    name: str,
    relay: bool = True,
    broker_wait_s: float | None = 30.0,
    pool_size: int | None = None,
) -> AsyncIterator[Kernel]:
    """Pool, broker connection loop, outbox relay; all closed (in reverse) on exit."""
    keyring = Keyring.from_settings(settings)  # a bad key stops the process here, one line
    if keyring.development:
        log.warning(
            "development_encryption_key",
            hint="ENCRYPTION_KEYS unset: sensitive fields are sealed with the public"
            " development key; set it (taskfleet keygen) outside development",
        )
    supervisor = Supervisor(name=name)
    try:
        pool = await create_pool(
            settings.database_url,
            size=pool_size or settings.db_pool_size,
            timeout_s=settings.db_timeout_s,
            statement_cache=settings.database_statement_cache,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise StartupError(f"DATABASE_URL: cannot use PostgreSQL: {exc}") from None
    export_pool_use(pool)
    broker = Broker(settings, supervisor, name=name)
    try:
        try:
            await broker.start(wait_s=broker_wait_s)
        except TimeoutError:
            raise StartupError(
                f"AMQP_URL: RabbitMQ not reachable within {broker_wait_s}s"
            ) from None
        kernel = Kernel(settings, pool, TaskStore(pool), broker, supervisor)
        supervisor.spawn("outbox-forget", kernel.store.forget_in_batches)
        supervisor.spawn("claim-batches", kernel.store.batched_claims)
        supervisor.spawn("completion-batches", kernel.store.batched_completions)
        supervisor.spawn("submission-batches", kernel.store.batched_submissions)
        if relay:
            supervisor.spawn("outbox-relay", OutboxRelay(pool, broker, settings).run)
            if settings.reconcile_interval_s > 0:  # one pass at a time in the whole fleet
                supervisor.spawn("reconciler", Reconciler(pool, broker, settings).run)
        yield kernel
    finally:
        await supervisor.aclose()
        await broker.close()
        await pool.close()


def stop_event_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: the process then stops gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop

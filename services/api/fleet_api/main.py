"""`taskfleet api`: run the API until SIGTERM/SIGINT, its /metrics on API_METRICS_PORT."""

import contextlib

import structlog
from aiohttp import web

from fleet_api.app import create_app
from fleet_api.settings import ApiSettings
from taskfleet.data.retention import RetentionJob
from taskfleet.data.schedule_runner import ScheduleRunner
from taskfleet.runtime.health import metrics_app, serve
from taskfleet.runtime.kernel import Kernel, open_kernel, stop_event_on_signals

log = structlog.get_logger("fleet_api")


async def main(settings: ApiSettings, host: str, port: int) -> None:
    """Serve the API and its /metrics, the retention job if RETENTION_INTERVAL_S > 0 and the
    schedule runner if SCHEDULER_TICK_S > 0, until SIGTERM/SIGINT. ConfigError without a
    usable TASKFLEET_JWT_SECRET; StartupError when a port cannot be bound."""
    settings.require_jwt_secret()
    stop = stop_event_on_signals()
    async with open_kernel(settings, name="api") as kernel:
        if settings.retention_interval_s > 0:  # in one replica at a time (an advisory lock)
            retention = RetentionJob.from_settings(settings)
            kernel.supervisor.spawn("retention", retention.run)
        if settings.scheduler_tick_s > 0:  # every replica; one at a time runs (a lock)
            kernel.supervisor.spawn("schedules", schedule_runner(kernel, settings).run)
        async with contextlib.AsyncExitStack() as servers:  # stopped in reverse order
            metrics = await serve(
                metrics_app(), host, settings.api_metrics_port, setting="API_METRICS_PORT"
            )
            servers.push_async_callback(metrics.cleanup)
            # At SIGTERM: no new connections, every WebSocket closed with 1001 (the app's
            # on_shutdown), requests in progress given SHUTDOWN_GRACE_S to finish.
            runner = await serve(
                create_app(kernel),
                host,
                port,
                setting="API_PORT (--port)",
                shutdown_timeout_s=settings.shutdown_grace_s,
            )
            servers.push_async_callback(runner.cleanup)
            log.info(
                "api_started",
                host=host,
                port=_bound(runner, port),
                metrics_port=_bound(metrics, settings.api_metrics_port),
            )
            await stop.wait()
        log.info("api_stopped")


def schedule_runner(kernel: Kernel, settings: ApiSettings) -> ScheduleRunner:
    """The schedule runner as SCHEDULER_TICK_S, SCHEDULER_LOCK_RETRY_S and SCHEDULE_GRACE_S
    set it."""
    return ScheduleRunner(
        kernel,
        tick_s=settings.scheduler_tick_s,
        lock_retry_s=settings.scheduler_lock_retry_s,
        grace_s=settings.schedule_grace_s,
    )


def _bound(runner: web.AppRunner, port: int) -> int:
    """The port a runner listens on (the one the OS chose, for port 0)."""
    return int(runner.addresses[0][1]) if runner.addresses else port

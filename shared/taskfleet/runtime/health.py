"""/healthz and /readyz (on the API's own port, and on a worker's METRICS_PORT) and /metrics
(on a worker's METRICS_PORT, and on the API's API_METRICS_PORT)."""

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from taskfleet.core.errors import StartupError

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]
# Why a process does not take work now, by cause (a worker's pauses): shown by /readyz.
Reasons = Callable[[], dict[str, str]]
# What /readyz reports without gating readiness on it (the API's broker: its outbox covers an
# outage, so a broker blip must not take every replica out of service).
Report = Callable[[], dict[str, object]]


def database_check(pool: asyncpg.Pool) -> Callable[[], Awaitable[bool]]:
    """A readiness check that the database answers `SELECT 1` within 2 s; it never raises."""

    async def check() -> bool:
        try:
            return bool(await pool.fetchval("SELECT 1", timeout=2))
        except Exception:
            return False

    return check


def add_health_routes(
    app: web.Application,
    ready: ReadyCheck,
    why: Reasons | None = None,
    report: Report | None = None,
) -> None:
    """/healthz and /readyz; `why` names what keeps a process from taking work, `report` adds
    what /readyz shows but does not decide on."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        reasons = why() if why is not None else {}
        ok = all(checks.values()) and not reasons
        body: dict[str, object] = {"status": "ready" if ok else "not_ready", "checks": checks}
        if reasons:
            body["paused"] = reasons
        if report is not None:
            body.update(report())
        return web.json_response(body, status=200 if ok else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def add_metrics_route(app: web.Application) -> None:
    """/metrics: this process's Prometheus metrics."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", metrics)


def metrics_app() -> web.Application:
    """An app that serves /metrics alone, for a port of its own (the API's API_METRICS_PORT)."""
    app = web.Application()
    add_metrics_route(app)
    return app


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    setting: str = "port",
    shutdown_timeout_s: float = 60.0,
) -> web.AppRunner:
    """Start `app`; returns the runner (its bound port is in runner.addresses). Its cleanup
    waits up to `shutdown_timeout_s` for requests in progress, then cancels them. A port
    that cannot be had stops the process with one line naming `setting`."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()  # the app's background loops end with it
        reason = exc.strerror or str(exc)
        raise StartupError(f"{setting}: cannot listen on {host}:{port}: {reason}") from None
    return runner

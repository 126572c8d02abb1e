"""/healthz, /readyz and /metrics: on the API's own app, and on METRICS_PORT for a worker."""

from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadyCheck = Callable[[], Awaitable[dict[str, bool]]]
# Why a process does not take work now, by cause (a worker's pauses): shown by /readyz.
Reasons = Callable[[], dict[str, str]]


def database_check(pool: asyncpg.Pool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            return bool(await pool.fetchval("SELECT 1", timeout=2))
        except Exception:
            return False

    return check


def add_health_routes(app: web.Application, ready: ReadyCheck, why: Reasons | None = None) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await ready()
        reasons = why() if why is not None else {}
        ok = all(checks.values()) and not reasons
        body: dict[str, object] = {"status": "ready" if ok else "not_ready", "checks": checks}
        if reasons:
            body["paused"] = reasons
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start `app`; returns the runner (its bound port is in runner.addresses)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

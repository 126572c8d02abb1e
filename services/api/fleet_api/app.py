"""The aiohttp application: middlewares, routes, health; built inside the process lifespan."""

from aiohttp import web

from fleet_api.auth import JWT_SECRET, auth_middleware
from fleet_api.errors import error_middleware
from fleet_api.routes import KERNEL, PUBLISH, add_routes
from taskfleet.health import add_health_routes, database_check
from taskfleet.kernel import Kernel
from taskfleet.submit import Publish

MAX_BODY_BYTES = 1024 * 1024


def create_app(kernel: Kernel, *, publish: Publish | None = None) -> web.Application:
    """`publish` defaults to the kernel broker's confirmed publish (tests inject a failing one)."""

    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES
    )
    app[KERNEL] = kernel
    app[PUBLISH] = publish
    app[JWT_SECRET] = kernel.settings.require_jwt_secret()
    db_ok = database_check(kernel.pool)

    async def ready() -> dict[str, bool]:
        return {"database": await db_ok(), "broker": kernel.broker.ready}

    add_health_routes(app, ready)
    add_routes(app)
    return app

"""The aiohttp application: middlewares, routes, health; built inside the process lifespan."""

from collections.abc import AsyncIterator

from aiohttp import web

from fleet_api.admin import add_admin_routes
from fleet_api.auth import DENIED, TOKENS, auth_middleware
from fleet_api.batches import add_batch_routes
from fleet_api.cameras import add_camera_routes
from fleet_api.console import add_console_routes
from fleet_api.documents import add_document_routes
from fleet_api.errors import error_middleware
from fleet_api.hub import EventHub
from fleet_api.memories import add_memory_routes
from fleet_api.metrics import metrics_middleware
from fleet_api.notifications import add_notification_routes
from fleet_api.openapi import OpenApi
from fleet_api.rate_limits import add_rate_limit_routes
from fleet_api.recovery import add_recovery_routes
from fleet_api.routes import KERNEL, OPENAPI, PUBLISHER, SETTINGS, add_routes
from fleet_api.schedules import add_schedule_routes
from fleet_api.settings import ApiSettings
from fleet_api.stats import add_stats_routes
from fleet_api.tasks import add_task_routes
from fleet_api.tokens import add_token_routes
from fleet_api.tracing import tracing_middleware
from fleet_api.webhooks import add_webhook_routes
from fleet_api.ws import HUB, SOCKETS, OpenSockets, close_sockets, ws_tasks
from taskfleet import __version__
from taskfleet.broker.publisher import Publish, Publisher
from taskfleet.data import queues
from taskfleet.runtime.health import add_health_routes, database_check
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.auth import TokenVerifier
from taskfleet.security.jwks import Jwks
from taskfleet.store.revocation import DenyList

MAX_BODY_BYTES = 1024 * 1024
# aiohttp refuses a longer request line itself, with a plain-text 400 that no route or error
# middleware sees. Its default (8190) is reached by a query of a few hundred non-ASCII
# characters (each up to 12 bytes percent-encoded): above it, the query models answer them
# with the JSON error body like any other bad value.
MAX_REQUEST_LINE = 64 * 1024


def create_app(kernel: Kernel, *, publish: Publish | None = None) -> web.Application:
    """`publish` defaults to the kernel broker's confirmed publish (tests inject a failing one)."""

    app = web.Application(
        middlewares=[metrics_middleware, tracing_middleware, error_middleware, auth_middleware],
        client_max_size=MAX_BODY_BYTES,
        handler_args={"max_line_size": MAX_REQUEST_LINE},
    )
    app[KERNEL] = kernel
    app[SETTINGS] = ApiSettings.of(kernel.settings)
    app[PUBLISHER] = Publisher(kernel, publish)
    app[DENIED] = DenyList()
    app[TOKENS] = TokenVerifier(
        kernel.settings.require_jwt_secret(),
        issuer=kernel.settings.jwt_issuer,
        audience=kernel.settings.jwt_audience,
        revoked=app[DENIED].denied,
        jwks=_jwks(app[SETTINGS]),
    )
    app[OPENAPI] = OpenApi("taskfleet", __version__)
    app[HUB] = EventHub(kernel.settings, kernel.broker)
    app[SOCKETS] = OpenSockets()
    app.on_shutdown.append(close_sockets)
    app.on_shutdown.append(_answer_long_polls)
    db_ok = database_check(kernel.pool)

    async def ready() -> dict[str, bool]:
        # The database alone decides: while the broker is away, submissions still commit with
        # their outbox rows and the relay publishes them once it is back (DESIGN.md).
        return {"database": await db_ok()}

    def broker_state() -> dict[str, object]:
        return {"broker": {"connected": kernel.broker.ready}}

    add_health_routes(app, ready, report=broker_state)
    add_routes(app)
    add_camera_routes(app)
    add_document_routes(app)
    add_task_routes(app)
    add_recovery_routes(app)
    add_admin_routes(app)
    add_memory_routes(app)
    add_stats_routes(app)
    add_token_routes(app)
    add_batch_routes(app)
    add_webhook_routes(app)
    add_notification_routes(app)
    add_rate_limit_routes(app)
    add_schedule_routes(app)
    app.router.add_get("/ws/tasks", ws_tasks)
    add_console_routes(app)

    async def openapi(_: web.Request) -> web.Response:
        return web.json_response(app[OPENAPI].document())

    app.router.add_get("/openapi.json", openapi)
    app.cleanup_ctx.append(_background)
    return app


def _jwks(settings: ApiSettings) -> Jwks | None:
    if settings.jwt_jwks_url is None:
        return None
    return Jwks(settings.jwt_jwks_url, refresh_s=settings.jwt_jwks_refresh_s)


async def _answer_long_polls(app: web.Application) -> None:
    """A stop answers every long poll at once, with its task as it is, instead of holding
    the stop for up to its `wait`."""
    app[HUB].wake_all(stopping=True)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The token deny-list, the event hub, the publisher and the queue-depth gauge run as long
    as the app."""
    kernel, name = app[KERNEL], f"queue-depths-{id(app):x}"
    deny_list, publisher = f"deny-list-{id(app):x}", f"publisher-{id(app):x}"
    await app[DENIED].refresh(kernel.pool)  # no request is served with a stale list
    kernel.supervisor.spawn(deny_list, lambda: app[DENIED].keep_fresh(kernel.pool))
    jwks, keys = app[TOKENS].jwks, f"jwks-{id(app):x}"
    if jwks is not None:
        await jwks.refresh()  # a failure is logged: HS256 tokens are served meanwhile
        kernel.supervisor.spawn(keys, jwks.run)
    await app[HUB].start()
    kernel.supervisor.spawn(publisher, app[PUBLISHER].run)
    kernel.supervisor.spawn(name, lambda: queues.poll_depths(kernel))
    yield
    await kernel.supervisor.stop(publisher)
    await kernel.supervisor.stop(name)
    await kernel.supervisor.stop(deny_list)
    if jwks is not None:
        await kernel.supervisor.stop(keys)
    await app[HUB].stop()

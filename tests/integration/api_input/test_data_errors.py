"""A data error from PostgreSQL is a 422 with the error body, not a 500."""

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from fleet_api.errors import error_middleware
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_input.helpers import error_of


async def test_a_data_error_from_postgresql_is_422_not_500(kernel: Kernel) -> None:
    """The last line of defence: a value that reached PostgreSQL and that it refused."""

    async def store_text(request: web.Request) -> web.Response:
        await kernel.pool.fetchval("SELECT $1::text", request.query["text"])
        return web.Response(status=204)

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/echo", store_text)
    async with TestClient(TestServer(app)) as c:
        resp = await c.get(URL("/echo?text=a%00b", encoded=True))
        err = await error_of(resp, 422)
        assert err["code"] == "invalid_request"
        assert err["details"]["sqlstate"].startswith("22")  # class 22: data exception
        assert (await c.get("/echo?text=fine")).status == 204

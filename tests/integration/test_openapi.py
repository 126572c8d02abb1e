"""The OpenAPI document is public and lists every route."""

import pytest

from fleet_api.app import create_app
from fleet_api.routes import OPENAPI
from taskfleet.runtime.kernel import Kernel
from tests.integration.api_client import api


@pytest.mark.parametrize("path", ["/openapi.json"])
async def test_openapi_is_public_and_lists_every_route(kernel: Kernel, path: str) -> None:
    async with api(kernel) as client:
        spec = await (await client.get(path)).json()
    assert spec["openapi"].startswith("3.1")
    app = create_app(kernel)
    routes = {(op.method.lower(), op.path) for op in app[OPENAPI].operations}
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented
    assert "Task" in spec["components"]["schemas"]

"""The console (/console/) and the API reference (/docs): static files shipped in this
package (fleet_api/static/), served under a strict Content-Security-Policy, and the route
that trades a one-time sign-in code for its token (docs/console.md, docs/security.md)."""

from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet_api.auth import is_page
from fleet_api.errors import ApiError, json_response
from fleet_api.openapi import Operation
from fleet_api.routes import KERNEL, OPENAPI, parse_body
from taskfleet.store.signin import redeem_code

STATIC = Path(__file__).parent / "static"
ASSETS = "/console/assets"
# Scripts and styles from our own files only: no inline script or style, no eval, nothing
# from another origin; the page cannot be framed, nor post a form elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate (ETag/Last-Modified): a new release shows at once
}


class SignInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=16, max_length=128, description="The one-time code of a sign-in link."
    )


class SignInSession(BaseModel):
    token: str = Field(description="A bearer token; keep it in memory, never in a URL.")


async def redeem(request: web.Request) -> web.Response:
    """A sign-in link's code for its token, once; 401 if unknown, used or expired."""
    body = await parse_body(request, SignInRequest)
    token = await redeem_code(request.app[KERNEL].pool, body.code)
    if token is None:
        raise ApiError(401, "invalid_code", "the sign-in code is unknown, used or expired")
    session = SignInSession(token=token).model_dump()
    return json_response(session, headers={"Cache-Control": "no-store"})


def _page(name: str) -> web.RouteDef:
    async def handler(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name / "index.html")

    return web.get(f"/{name}/" if name == "console" else f"/{name}", handler)


async def _to_console(_: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if is_page(request.path):
        response.headers.update(PAGE_HEADERS)


def add_console_routes(app: web.Application) -> None:
    """`/` → `/console/`, the pages, their files, and the sign-in code route."""
    redirects = [web.get("/", _to_console), web.get("/console", _to_console)]
    app.router.add_routes([*redirects, _page("console"), _page("docs")])
    app.router.add_static(ASSETS, STATIC)
    app.on_response_prepare.append(_headers)
    app[OPENAPI].add(
        app,
        Operation(
            "POST",
            "/api/console/session",
            redeem,
            "Trade a one-time sign-in code for its token",
            SignInSession,
            body=SignInRequest,
            errors=(400, 401, 413, 422, 503),
            tags=("console",),
            public=True,
        ),
    )

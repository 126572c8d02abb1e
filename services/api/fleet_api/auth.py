"""Who is calling: a bearer token on every /api route; on the WebSocket, the subprotocol
`bearer.<token>` (what a browser can send without putting the token in a URL) or `?token=`."""

from aiohttp import web

from fleet_api.errors import ApiError, Handler, not_found
from taskfleet.security.auth import AuthError, Principal, TokenVerifier
from taskfleet.store.revocation import DenyList

TOKENS = web.AppKey("tokens", TokenVerifier)
DENIED = web.AppKey("denied", DenyList)
PRINCIPAL = web.RequestKey("principal", Principal)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/api/console/session"})
# The console's pages and files (they hold no data: the page signs in to the API itself).
PAGE_PREFIXES = ("/console", "/docs")
WS_PROTOCOL = "taskfleet"  # the subprotocol the server picks when a browser offers the token
WS_TOKEN_PREFIX = "bearer."


def is_page(path: str) -> bool:
    """`/` and everything under PAGE_PREFIXES: public, under the console's headers."""
    return path == "/" or any(path == p or path.startswith(p + "/") for p in PAGE_PREFIXES)


def principal(request: web.Request) -> Principal:
    """The caller, as auth_middleware verified it; never set on PUBLIC_PATHS, which need none."""
    return request[PRINCIPAL]


def acting_for(request: web.Request, user_id: str | None, *, reading: bool, what: str) -> str:
    """The user a request acts for: the caller, or `?user_id=` for a service or admin token.

    Another user's object reads as absent (404); writing for another user is 403.
    """
    who = principal(request)
    user_id = user_id or who.user_id
    if who.may_act_for(user_id):
        return user_id
    if reading:
        raise not_found(f"{what} not found")
    raise ApiError(403, "forbidden", "a user token may only act for its own user_id")


def _token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.path.startswith("/ws/"):
        offered = request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        for protocol in (p.strip() for p in offered):
            if protocol.startswith(WS_TOKEN_PREFIX) and len(protocol) > len(WS_TOKEN_PREFIX):
                return protocol.removeprefix(WS_TOKEN_PREFIX)
        if request.query.get("token"):
            return request.query["token"]
    raise ApiError(401, "unauthorized", "missing bearer token")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for a request without a valid, unrevoked token, except on PUBLIC_PATHS."""
    if request.path in PUBLIC_PATHS or is_page(request.path):
        return await handler(request)
    try:
        request[PRINCIPAL] = await request.app[TOKENS].check(_token(request))
    except AuthError as exc:
        raise ApiError(401, "unauthorized", str(exc)) from None
    return await handler(request)

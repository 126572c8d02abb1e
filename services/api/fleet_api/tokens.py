"""`POST /api/tokens`: a service (or admin) token mints a short-lived user token, e.g. for a
browser, so that the backend's own long-lived token never leaves the backend."""

from datetime import UTC, datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from fleet_api.auth import TOKENS, principal
from fleet_api.errors import ApiError, json_response
from fleet_api.openapi import Operation
from fleet_api.routes import KERNEL, OPENAPI, parse_body
from taskfleet.core.messages import ID_PATTERN
from taskfleet.security.auth import token_for

MAX_TTL_S = 86_400  # a browser's session at the most: the user's token cannot be revoked by
# the backend that asked for it other than through `taskfleet revoke`


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(pattern=ID_PATTERN, description="The user the token speaks for.")
    # A number, not an integer: JSON's 600.0 is as good as 600 (strict parsing would refuse it).
    ttl_s: float = Field(3600, ge=60, le=MAX_TTL_S, description="Seconds until it expires.")
    tier: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The user's tier (e.g. `paid`): its submissions' default priority through"
        " PRIORITY_TIERS (docs/priorities.md).",
    )


class MintedToken(BaseModel):
    token: str = Field(description="A `user` scope bearer token for `user_id`.")
    user_id: str
    expires_at: datetime


async def mint_token(request: web.Request) -> web.Response:
    """A user token for `user_id`, signed as every token this API accepts; 403 for a user
    token (it could only mint itself a longer life)."""
    if principal(request).scope not in ("service", "admin"):
        raise ApiError(403, "forbidden", "minting a token needs a service or admin token")
    body = await parse_body(request, TokenRequest)
    settings = request.app[KERNEL].settings
    token = token_for(settings, body.user_id, scope="user", ttl_s=int(body.ttl_s), tier=body.tier)
    # Read back as the API reads every token: its `exp` is what the answer says.
    expires_at = datetime.fromtimestamp(request.app[TOKENS].verify(token).expires_at, UTC)
    minted = MintedToken(token=token, user_id=body.user_id, expires_at=expires_at)
    # A credential: no cache, no proxy, keeps a copy.
    return json_response(minted.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


def add_token_routes(app: web.Application) -> None:
    """Declare `POST /api/tokens`."""
    app[OPENAPI].add(
        app,
        Operation(
            "POST",
            "/api/tokens",
            mint_token,
            "Mint a short-lived user token (service or admin scope)",
            MintedToken,
            body=TokenRequest,
            errors=(400, 401, 403, 413, 422),
            tags=("tokens",),
        ),
    )

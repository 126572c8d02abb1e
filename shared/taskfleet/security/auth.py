"""Bearer tokens (JWT HS256).

The algorithm is fixed, never read from the token. `exp`, `sub`, `iss`, `aud` and `jti` are
required; `iss` and `aud` must be ours (JWT_ISSUER, JWT_AUDIENCE), and a token whose `jti` is
on the deny-list (taskfleet/store/revocation.py) is refused until its `exp`.
"""

import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import jwt

from taskfleet.core.messages import ID_PATTERN
from taskfleet.core.settings import Settings

Scope = Literal["user", "service", "admin"]
SCOPES: tuple[Scope, ...] = ("user", "service", "admin")
ALGORITHM = "HS256"
ISSUER = "taskfleet"
AUDIENCE = "taskfleet-api"
REQUIRED_CLAIMS = ["exp", "sub", "iss", "aud", "jti"]


class AuthError(Exception):
    """The token is missing, malformed, expired or badly signed (answered 401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    scope: Scope
    expires_at: float = field(default=math.inf, compare=False)  # the token's `exp`
    jti: str = field(default="", compare=False)
    # The token's `tier` claim (e.g. `paid`): the default priority of its submissions.
    tier: str | None = field(default=None, compare=False)

    def may_act_for(self, user_id: str) -> bool:
        """Whether it may act on `user_id`'s tasks: its own, or any with service or admin scope."""
        return self.scope in ("service", "admin") or user_id == self.user_id


def issue_token(
    secret: str,
    user_id: str,
    *,
    scope: Scope = "user",
    ttl_s: int = 3600,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    tier: str | None = None,
) -> str:
    """A signed token for `user_id`, valid `ttl_s` seconds, with a fresh `jti` to revoke it by
    (and a `tier` claim when given)."""
    now = int(time.time())
    claims = {"sub": user_id, "scope": scope, "iat": now, "exp": now + ttl_s, "iss": issuer,
              "aud": audience, "jti": uuid.uuid4().hex}  # fmt: skip
    if tier is not None:
        claims["tier"] = tier
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def token_for(
    settings: Settings,
    user_id: str,
    *,
    scope: Scope = "user",
    ttl_s: int = 3600,
    tier: str | None = None,
) -> str:
    """A token this deployment accepts: its secret, issuer and audience."""
    return issue_token(
        settings.require_jwt_secret(),
        user_id,
        scope=scope,
        ttl_s=ttl_s,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        tier=tier,
    )


def verify_token(
    secret: str, token: str, *, issuer: str = ISSUER, audience: str = AUDIENCE
) -> Principal:
    """The principal a token speaks for, once its signature and every required claim check out.

    Raises AuthError (answered 401) for a bad signature, an expired token, another issuer or
    audience, an unknown scope or a malformed subject or jti. It does not consult the deny-list.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    scope = claims.get("scope", "user")
    sub, jti = claims["sub"], claims["jti"]
    if scope not in SCOPES:
        raise AuthError(f"invalid token: unknown scope {scope!r}")
    if not isinstance(sub, str) or not re.fullmatch(ID_PATTERN, sub):
        raise AuthError("invalid token: bad subject")
    if not isinstance(jti, str) or not 0 < len(jti) <= 128:
        raise AuthError("invalid token: bad jti")
    tier = claims.get("tier")
    tier = tier if isinstance(tier, str) and 0 < len(tier) <= 64 else None  # else: no tier
    return Principal(sub, scope, expires_at=float(claims["exp"]), jti=jti, tier=tier)


def parse_ttl(text: str) -> int:
    """`90s`, `15m`, `1h`, `7d` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (ValueError, IndexError):
        seconds = 0
    if seconds <= 0:  # a token that is born expired is never what was meant
        raise ValueError(f"bad duration {text!r}: use e.g. 90s, 15m, 1h, 7d")
    return seconds


class TokenVerifier:
    """verify_token with a bounded cache of tokens already verified.

    Checking an HS256 signature and decoding the claims was a tenth of the API's CPU per
    request (bench/, py-spy), and a client sends the same token again and again. A cached
    token is still refused from the second its `exp` passes.
    """

    def __init__(
        self,
        secret: str,
        *,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        revoked: Callable[[str], bool] = lambda jti: False,
        size: int = 10_000,
    ) -> None:
        self._secret, self._issuer, self._audience = secret, issuer, audience
        self._revoked = revoked
        self._size = size
        self._verified: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        """The principal of `token` (cached while unexpired); AuthError if it is not valid.

        The deny-list is asked every time, cached or not, so a revoked token stops at once.
        """
        who = self._verified.get(token)
        if who is None or who.expires_at <= time.time():
            self._verified.pop(token, None)
            # Raises AuthError, e.g. when expired.
            who = verify_token(self._secret, token, issuer=self._issuer, audience=self._audience)
            if len(self._verified) >= self._size:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = who
        if self._revoked(who.jti):
            raise AuthError("invalid token: revoked")
        return who

"""Bearer tokens: JWT HS256 signed with the deployment's secret, and RS256 signed by a backend
whose public keys the API fetches from JWT_JWKS_URL (security/jwks.py).

The token's header only picks which of the two verifications runs: each has its one algorithm
and its own key, so a token cannot choose its algorithm (an RS256 public key is never an HMAC
secret, the classic confusion). `exp`, `sub`, `iss`, `aud` and `jti` are
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
from taskfleet.security.jwks import RS256, Jwks

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
    secret: str | jwt.PyJWK,
    token: str,
    *,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    algorithm: str = ALGORITHM,
) -> Principal:
    """The principal a token speaks for, once its signature and every required claim check out.

    Raises AuthError (answered 401) for a bad signature, an expired token, another issuer or
    audience, an unknown scope or a malformed subject or jti. It does not consult the deny-list.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[algorithm],
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
    """verify_token with a bounded cache of tokens already verified, and RS256 tokens checked
    against a JWKS when one is configured.

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
        jwks: Jwks | None = None,
    ) -> None:
        self._secret, self._issuer, self._audience = secret, issuer, audience
        self._revoked = revoked
        self._size = size
        self._verified: dict[str, Principal] = {}
        self.jwks = jwks

    def verify(self, token: str) -> Principal:
        """The principal of an HS256 `token` (cached while unexpired); AuthError if it is not
        valid. The deny-list is asked every time, cached or not, so a revoked token stops at once.
        """
        return self._checked(token, self._cached(token) or self._decode(token, self._secret))

    async def check(self, token: str) -> Principal:
        """As verify, for HS256 and, with a JWKS, RS256 tokens (their key fetched if new)."""
        who = self._cached(token)
        if who is None and self.jwks is not None and _header(token).get("alg") == RS256:
            kid = _header(token).get("kid")
            key = await self.jwks.key(kid) if isinstance(kid, str) else None
            if key is None:
                raise AuthError(f"invalid token: no signing key {kid!r} in the JWKS")
            who = self._decode(token, key, RS256)
        return self._checked(token, who or self._decode(token, self._secret))

    def _cached(self, token: str) -> Principal | None:
        who = self._verified.get(token)
        if who is not None and who.expires_at <= time.time():
            del self._verified[token]
            return None
        return who

    def _decode(self, token: str, key: str | jwt.PyJWK, algorithm: str = ALGORITHM) -> Principal:
        # Raises AuthError, e.g. when expired.
        who = verify_token(key, token, issuer=self._issuer, audience=self._audience,
                           algorithm=algorithm)  # fmt: skip
        if len(self._verified) >= self._size:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = who
        return who

    def _checked(self, token: str, who: Principal) -> Principal:
        if self._revoked(who.jti):
            raise AuthError("invalid token: revoked")
        return who


def _header(token: str) -> dict[str, object]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None

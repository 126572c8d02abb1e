"""Bearer tokens (JWT HS256).

The algorithm is fixed, never read from the token; `exp` is required.
"""

import math
import re
import time
from dataclasses import dataclass, field
from typing import Literal

import jwt

from taskfleet.messages import ID_PATTERN

Scope = Literal["user", "service", "admin"]
SCOPES: tuple[Scope, ...] = ("user", "service", "admin")
ALGORITHM = "HS256"


class AuthError(Exception):
    """The token is missing, malformed, expired or badly signed (answered 401)."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    scope: Scope
    expires_at: float = field(default=math.inf, compare=False)  # the token's `exp`

    def may_act_for(self, user_id: str) -> bool:
        return self.scope in ("service", "admin") or user_id == self.user_id


def issue_token(secret: str, user_id: str, *, scope: Scope = "user", ttl_s: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "scope": scope, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    scope = claims.get("scope", "user")
    sub = claims["sub"]
    if scope not in SCOPES:
        raise AuthError(f"invalid token: unknown scope {scope!r}")
    if not isinstance(sub, str) or not re.fullmatch(ID_PATTERN, sub):
        raise AuthError("invalid token: bad subject")
    return Principal(user_id=sub, scope=scope, expires_at=float(claims["exp"]))


class TokenVerifier:
    """verify_token with a bounded cache of tokens already verified.

    Checking an HS256 signature and decoding the claims was a tenth of the API's CPU per
    request (bench/, py-spy), and a client sends the same token again and again. A cached
    token is still refused from the second its `exp` passes.
    """

    def __init__(self, secret: str, size: int = 10_000) -> None:
        self._secret = secret
        self._size = size
        self._verified: dict[str, Principal] = {}

    def verify(self, token: str) -> Principal:
        who = self._verified.get(token)
        if who is not None and who.expires_at > time.time():
            return who
        self._verified.pop(token, None)
        who = verify_token(self._secret, token)  # raises AuthError, e.g. when expired
        if len(self._verified) >= self._size:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = who
        return who


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

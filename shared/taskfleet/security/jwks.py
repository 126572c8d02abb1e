"""The public keys of a JSON Web Key Set (JWT_JWKS_URL), for RS256 tokens that a backend signs
itself: the API then verifies them without the backend ever holding the API's HMAC secret.

PyJWT's own PyJWKClient fetches with urllib, which would block the event loop of the API on
every refresh; the keys are fetched here with aiohttp and parsed with PyJWT's PyJWKSet.
"""

import asyncio
import time

import aiohttp
import jwt
import structlog

log = structlog.get_logger("taskfleet.security")

RS256 = "RS256"
FETCH_TIMEOUT_S = 10.0
# The least time between two fetches that an unknown `kid` causes: a flood of tokens with made-up
# key ids must not become a flood of requests to the key server.
MIN_REFETCH_S = 30.0


class Jwks:
    """RS256 signing keys by `kid`, fetched at start, every `refresh_s`, and when a token names
    a key it does not know (at most once per MIN_REFETCH_S)."""

    def __init__(self, url: str, *, refresh_s: float, min_refetch_s: float = MIN_REFETCH_S):
        self.url, self.refresh_s, self.min_refetch_s = url, refresh_s, min_refetch_s
        self.keys: dict[str, jwt.PyJWK] = {}
        self.fetched_at = -float("inf")  # monotonic time of the last attempt
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Fetch now and every `refresh_s` (supervisor-owned); a failure keeps the keys held."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s)

    async def refresh(self) -> bool:
        """Fetch the key set; False (logged, keys kept) when the server or its answer fails."""
        async with self._lock:
            self.fetched_at = time.monotonic()
            try:
                self.keys = await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
                log.warning("jwks_fetch_failed", url=self.url, error=str(exc) or repr(exc))
                return False
            log.info("jwks_fetched", url=self.url, keys=len(self.keys))
            return True

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key `kid`, fetching the set once more when unknown and the last fetch is old."""
        if kid not in self.keys and time.monotonic() - self.fetched_at >= self.min_refetch_s:
            await self.refresh()
        return self.keys.get(kid)

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url, raise_for_status=True) as resp,
        ):
            document = await resp.json(content_type=None)
        if not isinstance(document, dict):
            raise ValueError("a JWKS is a JSON object with `keys`")
        found = jwt.PyJWKSet.from_dict(document).keys
        # Only RSA signing keys with a `kid`: a token chooses its key by `kid`, and RS256 is the
        # one algorithm verified with them.
        return {
            k.key_id: k
            for k in found
            if k.key_id and k.key_type == "RSA" and k.public_key_use in (None, "sig")
        }

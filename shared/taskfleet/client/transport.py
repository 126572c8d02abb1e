"""The client's one request path (`Transport`, which `Taskfleet` is): its HTTP session, and
each request sent again on 429 and 503 honouring Retry-After, and on a broken link when it is
safe (a read) or keyed (a submission with its Idempotency-Key)."""

from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar

import aiohttp
import tenacity
from pydantic import BaseModel

from taskfleet.client.errors import error_of, retry_after_or
from taskfleet.client.params import resend

M = TypeVar("M", bound=BaseModel)


class Transport:
    """The session and the request path under every method of the client."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        attempts: int = 5,
        timeout_s: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session this client made (one it was given stays open)."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session, with the bearer token on every request."""
        if self._session is None:  # made in the running loop, at first use
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def _call(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        key: str | None = None,
        safe: bool = False,
        body: Callable[[], dict[str, Any]] | None = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> M:
        """One request, sent again on 429/503 (and, when `safe` or keyed, a broken link)."""
        headers = {"Idempotency-Key": key} if key is not None else {}
        resend_on_link = safe or key is not None
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(lambda e: resend(e, safe=resend_on_link)),
            wait=retry_after_or(tenacity.wait_exponential_jitter(multiplier=0.2, max=10)),
            stop=tenacity.stop_after_attempt(self.attempts),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                extra = body() if body is not None else {}
                extra_headers = headers | extra.pop("headers", {})
                async with self.session.request(
                    method, self.base_url + path, params=params, headers=extra_headers,
                    timeout=timeout, **extra,
                ) as resp:  # fmt: skip
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise error_of(resp.status, raw, resp.headers.get("Retry-After"))
                    return model.model_validate_json(raw)
        raise AssertionError("unreachable: tenacity reraises the last error")

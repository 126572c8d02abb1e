"""`http_get`: fetch a URL on an allow-listed host, with size and time limits.

The model chooses the URL, so the operator chooses the hosts (HTTP_GET_ALLOWED_HOSTS; none
by default). Every redirect is checked against the list too, the body is read up to
HTTP_GET_MAX_BYTES and the whole fetch is bounded by HTTP_GET_TIMEOUT_S.
"""

from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from taskfleet.data.toolspecs import HttpGetArgs
from tool_worker.registry import ToolContext, ToolError, ToolUnavailable

MAX_REDIRECTS = 3
MAX_TEXT_CHARS = 16_000
CHUNK = 64 * 1024
HEADERS = {"User-Agent": "taskfleet-http_get"}
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")


def host_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """`example.com` allows exactly that host; `.example.com` allows its subdomains too."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return False
    return any(
        host == a or (a.startswith(".") and (host == a[1:] or host.endswith(a))) for a in allowed
    )


async def http_get(args: HttpGetArgs, tctx: ToolContext) -> dict[str, Any]:
    """The `http_get` tool: the page at the URL, whatever its status, following at most
    MAX_REDIRECTS redirects, each to an allowed host; a text body comes back as `text`.

    ToolError for a host not allowed or a bad response, ToolUnavailable when the host
    cannot be reached (the call may run again).
    """
    settings = tctx.settings
    timeout = aiohttp.ClientTimeout(total=settings.http_get_timeout_s)
    url = args.url
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for _ in range(MAX_REDIRECTS + 1):
                if not host_allowed(url, settings.http_get_allowed_hosts):
                    raise ToolError(
                        f"host of {url[:200]!r} is not allowed (HTTP_GET_ALLOWED_HOSTS)"
                    )
                async with http.get(url, allow_redirects=False, headers=HEADERS) as response:
                    location = response.headers.get("Location")
                    if response.status in (301, 302, 303, 307, 308) and location:
                        url = urljoin(url, location)
                        continue
                    return await _page(url, response, settings.http_get_max_bytes)
    except aiohttp.ClientConnectionError as exc:
        raise ToolUnavailable(f"cannot fetch {url[:200]!r}: {exc}") from None
    except aiohttp.ClientError as exc:
        raise ToolError(f"cannot fetch {url[:200]!r}: {exc}") from None
    raise ToolError(f"more than {MAX_REDIRECTS} redirects")


async def _page(url: str, response: aiohttp.ClientResponse, max_bytes: int) -> dict[str, Any]:
    body = bytearray()
    truncated = False
    while chunk := await response.content.read(CHUNK):
        body += chunk
        if len(body) > max_bytes:
            del body[max_bytes:]
            truncated = True
            break
    page: dict[str, Any] = {"url": url, "status": response.status,
                            "content_type": response.content_type, "bytes": len(body),
                            "truncated": truncated}  # fmt: skip
    if response.content_type.startswith(TEXT_TYPES):
        try:
            text = body.decode(response.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            text = body.decode("utf-8", errors="replace")
        page["text"] = text[:MAX_TEXT_CHARS]
        page["truncated"] = truncated or len(text) > MAX_TEXT_CHARS
    return page

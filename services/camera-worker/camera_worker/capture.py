"""Fetching one snapshot from a camera's snapshot_url, bounded in time and size."""

import aiohttp

from taskfleet.handler import PermanentError, RetryableError

USER_AGENT = "taskfleet-camera-worker/1"
CHUNK = 64 * 1024
MAX_REDIRECTS = 3


class CameraUnreachable(RetryableError):
    """The camera did not answer, or answered 408/429/5xx: worth trying again later."""

    code = "camera_unreachable"


class CameraRefused(PermanentError):
    """The camera answered, but not with a usable snapshot (4xx, too large)."""

    code = "camera_refused"


async def fetch_snapshot(url: str, *, timeout_s: float, max_bytes: int) -> bytes:
    """GET the snapshot; the whole exchange (connect, headers, body) within timeout_s."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        # A session per capture: one request per camera per interval does not need pooling,
        # and the worker then owns no long-lived client to close.
        async with (
            aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT}) as http,
            http.get(url, max_redirects=MAX_REDIRECTS) as resp,
        ):
            _check_status(resp.status, resp.reason)
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise CameraRefused(
                    f"snapshot of {resp.content_length} bytes exceeds the {max_bytes} allowed"
                )
            body = bytearray()
            async for chunk in resp.content.iter_chunked(CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise CameraRefused(f"snapshot exceeds the {max_bytes} bytes allowed")
            return bytes(body)
    except TimeoutError:
        raise CameraUnreachable(f"camera did not answer within {timeout_s:g}s") from None
    except aiohttp.InvalidURL as exc:
        raise CameraRefused(f"snapshot_url is not a usable URL: {exc}") from None
    except aiohttp.ClientError as exc:
        raise CameraUnreachable(f"camera did not answer: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # yarl's, for a URL that fits the API's pattern but not RFC 3986
        raise CameraRefused(f"snapshot_url is not a usable URL: {exc}") from None


def _check_status(status: int, reason: str | None) -> None:
    if status == 200:
        return
    message = f"camera answered HTTP {status} {reason or ''}".rstrip()
    if status in (408, 429) or status >= 500:
        raise CameraUnreachable(message)
    raise CameraRefused(message)

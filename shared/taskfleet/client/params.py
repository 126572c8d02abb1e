"""What a request of the client carries and when it is sent again: its idempotency key,
its owner, delay and callback parameters, and the resend rule."""

import uuid
from collections.abc import Mapping
from datetime import datetime

import aiohttp

from taskfleet.client.errors import RetryableError

# The link broke or timed out: whether the server acted is unknown; only a keyed submission
# or a read is sent again.
LINK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def resend(error: BaseException, *, safe: bool) -> bool:
    """429 and 503 (nothing was done), and, when sending again is `safe` (a read, a keyed
    submission), a broken link and a 503 `outcome_unknown` (it may have been stored)."""
    if isinstance(error, RetryableError):
        return safe or error.code != "outcome_unknown"
    return safe and isinstance(error, LINK_ERRORS)


def key(given: str | None) -> str:
    """The caller's idempotency key, else a new one for this submission (and its resends)."""
    return given if given is not None else uuid.uuid4().hex


def owner(user_id: str | None) -> dict[str, str]:
    """`user_id` for a service token acting for a user; nothing for one's own."""
    return {} if user_id is None else {"user_id": user_id}


def when(
    run_at: datetime | str | None, delay_s: float | None, priority: str | None = None
) -> dict[str, str | float]:
    """A delayed submission's fields; a datetime as RFC 3339 (it must carry its zone). And
    its priority, when given."""
    when: dict[str, str | float] = {} if priority is None else {"priority": priority}
    if run_at is not None:
        when["run_at"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
    if delay_s is not None:
        when["delay_s"] = delay_s
    return when


def callback(url: str | None) -> dict[str, str]:
    """A submission's `callback_url`, when given."""
    return {} if url is None else {"callback_url": url}


def query(fields: Mapping[str, str | float]) -> dict[str, str]:
    """Fields as query parameters (text)."""
    return {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in fields.items()}

"""The error format of every answer: `{"error": {"code", "message", "details"}}`. Never a 500
for anything a client sent; 503 with Retry-After while our own database or broker is away, and
503 `outcome_unknown` when the link broke while a submission was being committed."""

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from taskfleet.core import jsonx
from taskfleet.store import pool as db
from taskfleet.store.coalesce import BatchInterrupted

log = structlog.get_logger("fleet_api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Our database cannot be used right now: the same list the workers pause on.
UNAVAILABLE = db.UNAVAILABLE


# The link to PostgreSQL broke with a statement (or its commit) in flight, as opposed to a
# connection that could not be made: whether that statement committed is unknown.
LINK_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    BatchInterrupted,
    ConnectionResetError,
    BrokenPipeError,
    TimeoutError,  # a statement past DB_TIMEOUT_S may still commit
)
RETRY_AFTER = {"Retry-After": "2"}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer, serialised with orjson (asyncpg's UUIDs included)."""
    return web.Response(
        body=jsonx.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    """An answer in the error format every route shares."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return json_response(body, status, headers)


def not_found(what: str = "not found") -> ApiError:
    """A 404; also what another user's object answers, so that it looks absent."""
    return ApiError(404, "not_found", what)


def outcome_unknown(exc: BaseException, how_to_check: str) -> ApiError:
    """A creating request whose commit may or may not have happened: the client must not
    assume either. `how_to_check` tells it how to find out without creating twice."""
    log.warning("submission_outcome_unknown", error=repr(exc))
    return ApiError(
        503,
        "outcome_unknown",
        f"the database link broke while this was being saved: it may or may not"
        f" have been accepted; {how_to_check}",
        headers=RETRY_AFTER,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as the error format: ApiError as raised, aiohttp's own errors by
    their status, a value PostgreSQL cannot take as 422, a dependency away as 503 with
    Retry-After, anything else a logged 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        keep = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, code, exc.reason, headers=keep)
    except asyncpg.DataError as exc:
        # A value the request carried that PostgreSQL cannot hold or compare (the checks at
        # the door should have caught it first): the client's mistake, not ours.
        log.warning("request_data_error", path=request.path, error=repr(exc))
        return error_response(
            422,
            "invalid_request",
            "a value in the request is out of range or cannot be stored",
            {"sqlstate": exc.sqlstate},
        )
    except UNAVAILABLE as exc:
        log.warning("dependency_unavailable", path=request.path, error=repr(exc))
        return error_response(
            503, "unavailable", "a dependency is unavailable, retry shortly", headers=RETRY_AFTER
        )
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return error_response(500, "internal", "internal error")

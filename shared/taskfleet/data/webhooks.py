"""Webhook endpoints and their delivery log (docs/integrating.md#webhooks).

An endpoint is a user's URL, the events it takes and its signing secret (`whsec_` and base64
of 24 random bytes, as Standard Webhooks writes them), sealed at rest to its row and shown
once: when it is created, and when it is rotated. A submission's `callback_url` is an
endpoint too, of its task or batch alone (migrations/0028): made with it, not listed with the
user's, nor counted against MAX_ENDPOINTS, and deleted with it. The deliveries are written
by the database itself when an event happens (store/sql/tf_webhook_task_ended.sql,
tf_webhook_event.sql) and sent by taskfleet.data.webhook_sender; what is here reads them and
sends one again.
"""

import base64
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from taskfleet.data.operations import decode_cursor, encode_cursor
from taskfleet.security.crypto import Keyring
from taskfleet.store.records import Callback
from taskfleet.store.tenancy import Db

EVENTS = ("task.completed", "task.failed", "task.cancelled", "batch.completed")
SECRET_FIELD = "webhook_secret"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
MAX_ENDPOINTS = 20  # per user
ROTATION_GRACE_S = 86_400.0  # how long a rotated-out secret still signs, unless told

_ENDPOINT = "id, user_id, url, events, created_at, rotated_at, task_id, batch_id"
# The user's own endpoints, not a task's or a batch's callback.
_OWN = "task_id IS NULL AND batch_id IS NULL"
_DELIVERY = (
    "id, endpoint_id, event, status, attempts, payload, created_at, enqueued_at,"
    " last_attempt_at, CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,"
    " response_status, last_error, delivered_at"
)
_CREATE = f"""
INSERT INTO webhook_endpoints (id, user_id, url, events, secret)
SELECT $1, $2, $3, $4, $5
WHERE (SELECT count(*) FROM webhook_endpoints WHERE user_id = $2 AND {_OWN}) < $6
RETURNING {_ENDPOINT}
"""
_REDELIVER = f"""
UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), enqueued_at = now(),
    delivered_at = NULL
WHERE id = $2 AND endpoint_id = $1 AND status <> 'pending'
RETURNING {_DELIVERY}
"""


class TooManyEndpoints(Exception):
    """The user has MAX_ENDPOINTS endpoints already."""


@dataclass(frozen=True)
class Created:
    endpoint: dict[str, Any]
    secret: str  # the only time it is shown


def new_secret() -> str:
    """A fresh signing secret, as Standard Webhooks writes one."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def seal_secret(keyring: Keyring, endpoint_id: UUID, secret: str) -> dict[str, Any]:
    """The secret as the row stores it: sealed to the endpoint's id."""
    return keyring.seal(secret, row=endpoint_id, field=SECRET_FIELD)


def new_callback(keyring: Keyring, url: str) -> tuple[Callback, str]:
    """A submission's callback endpoint to create with its task or batch, and its secret (shown
    in the submission's answer)."""
    endpoint_id, secret = uuid4(), new_secret()
    return Callback(endpoint_id, url, seal_secret(keyring, endpoint_id, secret)), secret


async def add_batch_callback(
    conn: asyncpg.Connection, user_id: str, batch_id: UUID, callback: Callback
) -> None:
    """The batch's callback endpoint, in the batch's transaction: its `batch.completed` only."""
    await conn.execute(
        "INSERT INTO webhook_endpoints (id, user_id, url, events, secret, batch_id)"
        " VALUES ($1, $2, $3, ARRAY['batch.completed'], $4, $5)",
        callback.id, user_id, callback.url, callback.sealed_secret, batch_id,
    )  # fmt: skip


async def callback_of(
    db: Db, keyring: Keyring, *, task_id: UUID | None = None, batch_id: UUID | None = None
) -> tuple[UUID, str] | None:
    """The id and current secret of the task's (or batch's) callback endpoint, None if it has
    none: an idempotent repeat answers them again, since the first answer may have been lost
    (its sender may rotate the secret anyway, so this shows it nothing new)."""
    row = await db.fetchrow(
        "SELECT id, secret FROM webhook_endpoints WHERE task_id = $1 OR batch_id = $2",
        task_id, batch_id,
    )  # fmt: skip
    if row is None:
        return None
    secret: str = keyring.open(row["secret"], row=row["id"], field=SECRET_FIELD)
    return row["id"], secret


async def create_endpoint(
    db: Db, keyring: Keyring, *, user_id: str, url: str, events: list[str]
) -> Created:
    """A new endpoint with a new secret; TooManyEndpoints past MAX_ENDPOINTS."""
    endpoint_id, secret = uuid4(), new_secret()
    sealed = seal_secret(keyring, endpoint_id, secret)
    row = await db.fetchrow(_CREATE, endpoint_id, user_id, url, events, sealed, MAX_ENDPOINTS)
    if row is None:
        raise TooManyEndpoints(f"a user has at most {MAX_ENDPOINTS} webhook endpoints")
    return Created(dict(row), secret)


async def list_endpoints(db: Db, user_id: str) -> list[dict[str, Any]]:
    """The user's endpoints, newest first (never their secrets)."""
    rows = await db.fetch(
        f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE user_id = $1 AND {_OWN}"
        " ORDER BY created_at DESC, id DESC",
        user_id,
    )
    return [dict(r) for r in rows]


async def endpoint_owner(pool: asyncpg.Pool, endpoint_id: UUID) -> str | None:
    """Whose endpoint it is (the kernel's read, for a service or admin token), None if none."""
    owner: str | None = await pool.fetchval(
        "SELECT user_id FROM webhook_endpoints WHERE id = $1", endpoint_id
    )
    return owner


async def get_endpoint(db: Db, endpoint_id: UUID) -> dict[str, Any] | None:
    """The endpoint, if `db` shows it."""
    row = await db.fetchrow(f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return dict(row) if row else None


async def delete_endpoint(db: Db, endpoint_id: UUID) -> bool:
    """Delete it and its delivery log (a delivery in flight is then not recorded)."""
    status = await db.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return status != "DELETE 0"


async def rotate_secret(
    db: Db, keyring: Keyring, endpoint_id: UUID, *, previous_for_s: float
) -> tuple[str, datetime | None] | None:
    """A new secret for the endpoint, signing from the next attempt on, and until when the
    one it replaces signs beside it (None: not at all); None if there is no such endpoint."""
    secret = new_secret()
    until = await db.fetchrow(
        "UPDATE webhook_endpoints SET previous_secret = CASE WHEN $3 > 0 THEN secret END,"
        " previous_until = CASE WHEN $3 > 0 THEN now() + make_interval(secs => $3) END,"
        " secret = $2, rotated_at = now() WHERE id = $1 RETURNING previous_until",
        endpoint_id,
        seal_secret(keyring, endpoint_id, secret),
        float(previous_for_s),
    )
    return (secret, until["previous_until"]) if until is not None else None


async def list_deliveries(
    db: Db, endpoint_id: UUID, *, limit: int, cursor: str | None, status: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The endpoint's delivery log, newest first, a page at a time, and the next page's
    cursor (BadCursor for a cursor that was not handed out)."""
    args: list[Any] = [endpoint_id, limit + 1]
    where = "endpoint_id = $1"
    if status is not None:
        args.append(status)
        where += f" AND status = ${len(args)}"
    if cursor is not None:
        args.extend(decode_cursor(cursor))
        where += f" AND (created_at, id) < (${len(args) - 1}, ${len(args)})"
    rows = await db.fetch(
        f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE {where}"
        " ORDER BY created_at DESC, id DESC LIMIT $2",
        *args,
    )
    deliveries = [dict(r) for r in rows[:limit]]
    last = deliveries[-1] if len(rows) > limit else None
    return deliveries, encode_cursor(last["created_at"], last["id"]) if last else None


async def get_delivery(db: Db, endpoint_id: UUID, delivery_id: UUID) -> dict[str, Any] | None:
    """One delivery of the endpoint, if `db` shows it."""
    row = await db.fetchrow(
        f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE id = $2 AND endpoint_id = $1",
        endpoint_id,
        delivery_id,
    )
    return dict(row) if row else None


async def redeliver(db: Db, endpoint_id: UUID, delivery_id: UUID) -> dict[str, Any] | None:
    """A delivered or failed delivery due again now, with a fresh deadline and the same
    `webhook-id`; None if it is pending already (or absent)."""
    row = await db.fetchrow(_REDELIVER, endpoint_id, delivery_id)
    return dict(row) if row else None

"""Email notifications (docs/integrating.md#email-notifications): a user's choice (address,
threshold, events), the notifications written for them, and the notifier's claims.

A notification row is written by the database in the transaction that ended its task
(store/sql/tf_notify_task_ended.sql), one per task. The notifier (tool_worker.notifier) claims
due rows (FOR UPDATE SKIP LOCKED: replicas share them, never the same one) by marking them
`sending`, sends, and marks them `sent`. A row left `sending` past its lease belonged to a
notifier that died mid-send: the mail may have gone, so it is `failed`, never sent again.
"""

from typing import Any
from uuid import UUID

import asyncpg

from taskfleet.store.tenancy import Db

EVENTS = ("task.completed", "task.failed")

_SETTINGS = "user_id, email, min_duration_s, events, enabled, updated_at"
_PUT = f"""
INSERT INTO notification_settings (user_id, email, min_duration_s, events, enabled)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id) DO UPDATE SET email = $2, min_duration_s = $3, events = $4,
    enabled = $5, updated_at = now()
RETURNING {_SETTINGS}
"""
_LIST = """
SELECT task_id, event, email, status, created_at, sent_at, last_error FROM notifications
WHERE user_id = $1 ORDER BY created_at DESC, task_id LIMIT $2
"""
_CLAIM = """
UPDATE notifications n SET status = 'sending', attempts = n.attempts + 1, claimed_at = now()
FROM (SELECT task_id FROM notifications WHERE status = 'pending' AND next_attempt_at <= now()
      ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due, tasks t
WHERE n.task_id = due.task_id AND t.id = n.task_id
RETURNING n.task_id, n.user_id, n.email, n.event, n.attempts, t.type, t.chat_id,
    t.started_at, t.completed_at, t.error ->> 'code' AS error_code
"""
# Each outcome only for the claim that made it (its attempt number), and only while it holds it.
_SENT = """
UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL
WHERE task_id = $1 AND attempts = $2 AND status = 'sending'
"""
_AGAIN = """
UPDATE notifications SET status = 'pending', last_error = $3,
    next_attempt_at = now() + make_interval(secs => $4)
WHERE task_id = $1 AND attempts = $2 AND status = 'sending'
"""
_FAILED = """
UPDATE notifications SET status = 'failed', last_error = $3
WHERE task_id = $1 AND attempts = $2 AND status = 'sending'
"""
_LOST = """
UPDATE notifications SET status = 'failed',
    last_error = 'its notifier was lost while sending: it may have been sent, so never again'
WHERE status = 'sending' AND claimed_at < now() - make_interval(secs => $1)
"""


async def get_settings(db: Db, user_id: str) -> dict[str, Any] | None:
    """The user's choice, None if they made none."""
    row = await db.fetchrow(
        f"SELECT {_SETTINGS} FROM notification_settings WHERE user_id = $1", user_id
    )
    return dict(row) if row else None


async def put_settings(
    db: Db, user_id: str, *, email: str, min_duration_s: float, events: list[str], enabled: bool
) -> dict[str, Any]:
    """Set the user's choice (whole), answered as stored."""
    row = await db.fetchrow(_PUT, user_id, email, min_duration_s, events, enabled)
    assert row is not None
    return dict(row)


async def delete_settings(db: Db, user_id: str) -> bool:
    """No more notifications for the user; False if they had asked for none."""
    done = await db.execute("DELETE FROM notification_settings WHERE user_id = $1", user_id)
    return done != "DELETE 0"


async def list_notifications(db: Db, user_id: str, limit: int) -> list[dict[str, Any]]:
    """The user's notifications, newest first."""
    return [dict(r) for r in await db.fetch(_LIST, user_id, limit)]


async def claim(pool: asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    """Due notifications, now `sending` for this notifier, with what the mail says."""
    return list(await pool.fetch(_CLAIM, limit))


async def sent(pool: asyncpg.Pool, task_id: UUID, attempts: int) -> None:
    """The claim `attempts` sent it."""
    await pool.execute(_SENT, task_id, attempts)


async def again(
    pool: asyncpg.Pool, task_id: UUID, attempts: int, error: str, delay_s: float
) -> None:
    """Back to pending after `delay_s`: only when nothing was sent (no server to take it)."""
    await pool.execute(_AGAIN, task_id, attempts, error[:500], delay_s)


async def failed(pool: asyncpg.Pool, task_id: UUID, attempts: int, error: str) -> None:
    """The server refused it: not tried again."""
    await pool.execute(_FAILED, task_id, attempts, error[:500])


async def give_up_lost(pool: asyncpg.Pool, lease_s: float) -> int:
    """Fail the notifications whose notifier died mid-send (claimed more than `lease_s` ago)."""
    done: str = await pool.execute(_LOST, lease_s)
    return int(done.split()[-1])

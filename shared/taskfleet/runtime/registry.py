"""The worker registry: which worker processes are alive and what each is doing.

Every consumer (taskfleet.path.consumer) upserts its row in `workers` every WORKER_HEARTBEAT_S: its
in-flight task ids and its supervised background tasks; the row's id is the holder of every
task it claims. A row not refreshed for 2.5 heartbeats reads as `lost`
(store/sql/tf_worker_live.sql: a late beat is not a death, and two and a half intervals still
name it lost within three), and its in-flight tasks as at risk: RabbitMQ redelivers them once
the dead process's connection is gone, and the reconciler hands over what it does not. A
worker that stops cleanly says so (`stopped`).
"""

import asyncio
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import structlog

from taskfleet import __version__
from taskfleet.runtime.memguard import resident_bytes

log = structlog.get_logger("taskfleet.registry")

# Rows of workers gone longer than this are deleted by the heartbeats of the living.
FORGET_AFTER = "7 days"


@dataclass(frozen=True, slots=True)
class Registration:
    worker: str
    queue: str
    concurrency: int
    heartbeat_s: float
    id: UUID = field(default_factory=uuid4)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    version: str = __version__


async def beat(
    pool: asyncpg.Pool,
    me: Registration,
    inflight: Iterable[UUID],
    background: dict[str, bool],
    paused: dict[str, str] | None = None,
) -> None:
    """Upsert the worker's row: alive now, with its in-flight task ids, background tasks, the
    process's resident memory and why it takes no deliveries (`paused`: cause -> reason)."""
    await pool.execute(
        "INSERT INTO workers (id, worker, queue, host, pid, version, concurrency, heartbeat_s,"
        " inflight, background, rss_bytes, paused)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), inflight = $9, background = $10,"
        " rss_bytes = $11, paused = $12",
        me.id,
        me.worker,
        me.queue,
        me.host,
        me.pid,
        me.version,
        me.concurrency,
        me.heartbeat_s,
        list(inflight),
        background,
        resident_bytes(),
        paused or {},
    )


async def heartbeat(
    pool: asyncpg.Pool,
    me: Registration,
    inflight: Callable[[], Iterable[UUID]],
    background: Callable[[], dict[str, bool]],
    paused: Callable[[], dict[str, str]] = dict,
) -> None:
    """A worker's supervised loop: one beat now, then one every heartbeat_s."""
    while True:
        try:
            await beat(pool, me, inflight(), background(), paused())
            await pool.execute(
                f"DELETE FROM workers WHERE heartbeat_at < now() - interval '{FORGET_AFTER}'"
            )
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            # The database is away: the next beat tries again; meanwhile we may read as lost.
            log.warning("heartbeat_failed", error=repr(exc))
        await asyncio.sleep(me.heartbeat_s)


async def mark_stopped(pool: asyncpg.Pool, me: Registration) -> None:
    """Record a clean stop, so the row reads `stopped`, not `lost`, and holds no tasks at risk."""
    await pool.execute(
        "UPDATE workers SET stopped_at = now(), heartbeat_at = now(), inflight = '{}'"
        " WHERE id = $1",
        me.id,
    )


async def list_workers(pool: asyncpg.Pool, *, include_gone: bool = False) -> list[dict[str, Any]]:
    """Live workers first, then lost ones (with their tasks at risk); stopped ones on request."""
    rows = await pool.fetch(
        "SELECT *, extract(epoch FROM now() - heartbeat_at) AS heartbeat_age_s,"
        " CASE WHEN stopped_at IS NOT NULL THEN 'stopped'"
        "      WHEN NOT tf_worker_live(stopped_at, heartbeat_at, heartbeat_s) THEN 'lost'"
        "      ELSE 'live' END AS status"
        " FROM workers ORDER BY heartbeat_at DESC",
    )
    out = []
    for r in rows:
        if r["status"] == "stopped" and not include_gone:
            continue
        worker = dict(r)
        worker["heartbeat_age_s"] = round(float(worker["heartbeat_age_s"]), 3)
        worker["at_risk"] = list(worker["inflight"]) if r["status"] == "lost" else []
        out.append(worker)
    order = {"live": 0, "lost": 1, "stopped": 2}
    return sorted(out, key=lambda w: order[w["status"]])

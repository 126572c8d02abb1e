"""Periodic capture: one scheduler across every camera-worker replica.

Every replica runs this loop; only the holder of a PostgreSQL session advisory lock schedules.
The lock lives on a connection of its own, and everything the holder writes goes through that
same connection, so a holder that lost its session (killed, cut off, database restarted) has
lost the lock *and* cannot write: there is never a second writer. A killed holder's session
ends with its socket, so a standby, retrying every CAMERA_LOCK_RETRY_S, takes over within
about that long.

Per camera, `next_capture_at` is the next slot. The holder creates a slot's frame and capture
task and advances `next_capture_at` in one transaction, so a slot is created exactly once
whoever holds the lock, and a new holder carries on from the last committed slot. Slots stay
on the grid `first + k·interval_s` (no drift). Slots that fell due while nobody held the lock
are not captured late: the latest due slot is captured and the older ones are skipped (a
picture taken now would not be a picture of then); while a holder lives, its tick
(CAMERA_SCHEDULER_TICK_S ≤ 0.5 s < the shortest interval) sees every slot in time.
"""

import asyncio
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import uuid4

import asyncpg
import structlog

from camera_worker.settings import CameraWorkerSettings
from taskfleet.broker.publisher import new_task, publish_after_commit
from taskfleet.handler import Kernel, TaskType
from taskfleet.store.pool import create_pool
from taskfleet.store.records import Outgoing

log = structlog.get_logger("camera_worker.scheduler")

# Any constant will do: it only has to be the same for every replica on one database.
SCHEDULER_LOCK = 0x7A5FCA4E
BATCH = 100
# Errors that mean "our session is gone or the database is away": step down and try again.
RECOVERABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# On the lock's session: PostgreSQL notices a holder whose host vanished (no TCP answer) in
# about 5 + 2·3 s and ends the session, freeing the lock; the OS default is hours.
KEEPALIVES = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
)

_DUE = """
SELECT user_id, camera_id, interval_s, next_capture_at,
       floor(extract(epoch FROM now() - next_capture_at) / interval_s)::bigint AS behind
FROM cameras
WHERE enabled AND snapshot_url IS NOT NULL AND next_capture_at <= now()
ORDER BY next_capture_at
LIMIT $1
FOR UPDATE SKIP LOCKED
"""


@dataclass
class CaptureScheduler:
    kernel: Kernel
    settings: CameraWorkerSettings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = CameraWorkerSettings.of(self.kernel.settings)

    async def run(self) -> None:
        """Forever: wait for the lock, schedule while holding it, start over if it is lost."""
        retry_s = self.settings.camera_lock_retry_s
        while True:
            try:
                await self._serve()
            except RECOVERABLE as exc:
                log.warning("camera_scheduler_lost", error=repr(exc))
            # Our own retry rather than the supervisor's restart: its backoff grows to 30 s,
            # and a takeover must stay within a few seconds.
            await asyncio.sleep(retry_s)

    async def _serve(self) -> None:
        settings = self.settings
        # A pool of one, only for its connection setup (JSON codecs, timeouts): the
        # connection is held for the whole leadership, never returned while leading. Straight to
        # PostgreSQL: a pooler in transaction mode would share the lock's session with others.
        pool = await create_pool(
            settings.direct_database_url, size=1, timeout_s=settings.db_timeout_s
        )
        try:
            conn = await pool.acquire()
            await conn.execute(KEEPALIVES)
            await self._wait_for_lock(conn)
            log.info("camera_scheduler_leader")
            while True:
                delay_s = await self.tick(conn)
                await asyncio.sleep(delay_s)
        finally:
            # Closing the socket ends the session at once, and with it the lock: a standby
            # takes over without waiting for a timeout.
            pool.terminate()

    async def _wait_for_lock(self, conn: asyncpg.Connection) -> None:
        said_standby = False
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SCHEDULER_LOCK):
            if not said_standby:
                log.info("camera_scheduler_standby")
                said_standby = True
            await asyncio.sleep(self.settings.camera_lock_retry_s)

    async def tick(self, conn: asyncpg.Connection) -> float:
        """Create the capture tasks of every due slot; returns how long to sleep."""
        messages: list[Outgoing] = []
        async with conn.transaction():
            for camera in await conn.fetch(_DUE, BATCH):
                message = await self._capture(conn, camera)
                if message is not None:
                    messages.append(message)
        # After commit; if a publish fails or we die first, the outbox relay publishes it. With
        # the broker away we leave them all to the relay at once rather than wait out each
        # publish timeout, which would hold up the next slots.
        if messages and self.kernel.broker.ready:
            await asyncio.gather(*(publish_after_commit(self.kernel, m) for m in messages))
        if len(messages) >= BATCH:
            return 0.0
        until_due = await conn.fetchval(
            "SELECT extract(epoch FROM min(next_capture_at) - now()) FROM cameras"
            " WHERE enabled AND snapshot_url IS NOT NULL"
        )
        tick_s = self.settings.camera_scheduler_tick_s
        return tick_s if until_due is None else min(tick_s, max(0.01, float(until_due)))

    async def _capture(self, conn: asyncpg.Connection, camera: asyncpg.Record) -> Outgoing | None:
        settings, user_id, camera_id = self.settings, camera["user_id"], camera["camera_id"]
        interval = timedelta(seconds=camera["interval_s"])
        behind: int = camera["behind"]
        slot: datetime = camera["next_capture_at"] + behind * interval
        if behind:
            log.warning(
                "camera_slots_skipped",
                camera_id=camera_id,
                user_id=user_id,
                skipped=behind,
                slot_at=slot.isoformat(),
            )
        frame_id = uuid4()
        new = replace(
            new_task(
                settings,
                type=TaskType.CAMERA,
                user_id=user_id,
                input={"frame_id": str(frame_id), "camera_id": camera_id},
            ),
            max_attempts=settings.camera_capture_max_attempts,
        )
        outgoing: Outgoing | None = None
        try:
            async with conn.transaction():  # a savepoint: a clash undoes only this camera
                outgoing = await self.kernel.store.insert_task(
                    conn, new, relay_grace_s=settings.outbox_grace_s
                )
                await conn.execute(
                    "INSERT INTO camera_frames (id, user_id, camera_id, task_id, source, slot_at)"
                    " VALUES ($1, $2, $3, $4, 'capture', $5)",
                    frame_id,
                    user_id,
                    camera_id,
                    new.task_id,
                    slot,
                )
        except asyncpg.UniqueViolationError:
            # Cannot happen while the lock holds; the unique slot index makes sure of it.
            log.error("camera_slot_exists", camera_id=camera_id, slot_at=slot.isoformat())
            outgoing = None
        await conn.execute(
            "UPDATE cameras SET next_capture_at = $3 WHERE user_id = $1 AND camera_id = $2",
            user_id,
            camera_id,
            slot + interval,
        )
        return outgoing

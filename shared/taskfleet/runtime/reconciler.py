"""The reconciler: every accepted task reaches a terminal status, whatever was lost (DESIGN.md §4).

The message path keeps tasks moving as long as their messages do. The reconciler covers
what no message carries any more: a message dropped between the broker and the database, a
holder that died without the broker noticing, a handler stuck past its deadline, a resume
that never went out. Every process with a kernel runs one; a transaction-scoped advisory lock
lets one pass run at a time in the whole fleet. Each pass is four statements
(store/sql/tf_reconcile_*.sql), each reading a partial index of unfinished tasks (or of
scheduled ones), so a pass costs the same on a table of millions of finished tasks:

- lost_message: a queued or retrying task, due, with no outbox row and unchanged for
  RECONCILE_AFTER_S, is published again through the outbox (the claim settles a copy that
  turns up after all as a duplicate). If its queue has messages waiting, its message may be
  among them: it is given ten times as long.
- children_done: a waiting task whose children all ended, unchanged for RECONCILE_AFTER_S,
  is resumed, as the last child's trigger would have.
- scheduled_due: a delayed task (`scheduled`) due for RECONCILE_AFTER_S that has no outbox
  row any more is given one, due now: the relay queues and publishes it as it would have
  at its time.
- holder_gone / not_held / past_deadline: a running task whose holder left the worker
  registry (lost or stopped), or whose holder's heartbeats stopped listing it, or that is
  TASK_GRACE_S past its deadline, is handed over to a new attempt with the fence moved on,
  or fails with `worker_lost` / `deadline_exceeded` when its attempts are spent. Right
  after this process could not reach the database, every heartbeat reads stale: holders
  are trusted to be gone only once it has seen the database for a while.

Repairs are counted in `taskfleet_reconciled_total{reason}`, logged one line each
(`task_reconciled`), and announced as live events when they change a task's status.
"""

import asyncio
import time
from dataclasses import dataclass

import asyncpg
import structlog

from taskfleet.broker.connection import Broker
from taskfleet.core import events, jsonx
from taskfleet.core.constants import LEVELS, QUEUES, level_queue
from taskfleet.core.metrics import RECONCILED
from taskfleet.core.settings import Settings
from taskfleet.store.pool import UNAVAILABLE

log = structlog.get_logger("taskfleet.reconciler")

# Any constant will do; it only has to differ from the other advisory locks of the schema.
RECONCILE_LOCK = 0x7A5F4EC0
BATCH = 500
# A lost task of a queue with messages waiting is given this many times RECONCILE_AFTER_S.
BACKLOG_FACTOR = 10


@dataclass
class Reconciler:
    pool: asyncpg.Pool
    broker: Broker
    settings: Settings
    _reachable_since: float | None = None

    async def run(self) -> None:
        """A kernel's supervised loop: one pass every RECONCILE_INTERVAL_S."""
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            try:
                await self.reconcile_once()
            except UNAVAILABLE as exc:
                self._reachable_since = None
                log.warning("reconcile_skipped", error=repr(exc))

    async def reconcile_once(self) -> dict[str, int] | None:
        """One pass, unless another process of the fleet is in one (then None).

        Returns the number of repairs by reason."""
        now = time.monotonic()
        if self._reachable_since is None:
            self._reachable_since = now
        trust_registry = now - self._reachable_since >= self._registry_warmup_s
        busy = await self._busy_queues()
        after_s, grace_s = self.settings.reconcile_after_s, self.settings.task_grace_s
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECONCILE_LOCK):
                return None
            lost = await conn.fetch(
                "SELECT *, 'lost_message' AS reason FROM tf_reconcile_lost($1, $2, $3, $4)",
                after_s,
                busy,
                after_s * BACKLOG_FACTOR,
                BATCH,
            )
            resumed = await conn.fetch(
                "SELECT *, 'children_done' AS reason FROM tf_reconcile_waiting($1, $2)",
                after_s,
                BATCH,
            )
            running = await conn.fetch(
                "SELECT * FROM tf_reconcile_running($1, $2, $3)", trust_registry, grace_s, BATCH
            )
            due = await conn.fetch(
                "SELECT *, 'scheduled_due' AS reason FROM tf_reconcile_scheduled($1, $2)",
                after_s,
                BATCH,
            )
        repairs = [*lost, *resumed, *running, *due]
        for row in repairs:
            await self._announce(row)
        counts: dict[str, int] = {}
        for row in repairs:
            counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        return counts

    @property
    def _registry_warmup_s(self) -> float:
        # Long enough for every worker to beat again after an outage (3 intervals covers the
        # 2.5 the registry allows), and not less than the other repairs wait.
        return max(self.settings.reconcile_after_s, 3 * self.settings.worker_heartbeat_s)

    async def _busy_queues(self) -> list[str]:
        """Work queues with messages ready at any level (unknown: all of them)."""
        names = {
            self.settings.queue(level_queue(s.name, level)): s.name
            for s in QUEUES.values()
            for level in LEVELS
        }
        try:
            counts = await self.broker.inspect(list(names))
        except (ConnectionError, OSError, RuntimeError) as exc:
            log.info("reconcile_queue_depths_unknown", error=repr(exc))
            return list(dict.fromkeys(names.values()))
        return list(dict.fromkeys(names[n] for n, (ready, _) in counts.items() if ready))

    async def _announce(self, row: asyncpg.Record) -> None:
        reason, status = row["reason"], row["status"]
        RECONCILED.labels(reason).inc()
        log.warning(
            "task_reconciled",
            task_id=str(row["id"]),
            user_id=row["user_id"],
            reason=reason,
            status=status,
        )
        if reason in ("lost_message", "scheduled_due"):
            # A new copy of its message: nothing a client sees changed (yet: the relay
            # announces a delayed task `queued` when it publishes it).
            return
        key, body = events.task_updated(
            task_id=row["id"],
            task_type=row["type"],
            user_id=row["user_id"],
            chat_id=row["chat_id"],
            status=status,
            seq=events.event_seq(row["event_seq"]),
        )
        await self.broker.publish_event(key, jsonx.dumps(body))

"""`taskfleet rotate-key`: every sealed value under an older key, sealed again under the
current one (docs/security.md).

It runs beside a live fleet. Rows are read in batches by id, re-sealed in this process, and
written back only where the column still holds the value that was read: a row that a worker
changed meanwhile is left as it is (its new value was sealed by the worker, under the key it
has) and is looked at again by the next pass. Running it twice does nothing the second time.
Memories saved before sealing was deployed (plain facts and keys) are sealed on the way.
"""

from dataclasses import dataclass
from uuid import UUID

import asyncpg
import structlog

from taskfleet.core.settings import Settings
from taskfleet.data.memories import FACT, fact_key
from taskfleet.security.crypto import Keyring, Unsealable
from taskfleet.store.pool import create_pool
from taskfleet.store.tenancy import cli_actor

log = structlog.get_logger("taskfleet.rotation")

TASK_FIELDS = ("input", "output", "partial_output", "checkpoint")
# A sealed object anywhere in the document whose key is not the current one.
_STALE_PATH = '$.** ? (@."$sealed" == 1 && @.kid != $kid)'
MAX_PASSES = 5


@dataclass
class Rotated:
    """One table's count: values sealed again, values that would not open, and what is left."""

    table: str
    resealed: int = 0
    failed: int = 0
    left: int = 0

    def line(self) -> str:
        """The count as one line of `taskfleet rotate-key`'s report."""
        failed = f", {self.failed} would not open" if self.failed else ""
        return f"{self.table}: {self.resealed} re-sealed{failed}, {self.left} left"


def _stale(column: str) -> str:
    return f"jsonb_path_exists({column}, $2::jsonpath, jsonb_build_object('kid', $1::text))"


async def rotate(settings: Settings, keyring: Keyring, *, batch: int) -> list[Rotated]:
    """The command: its own small pool, closed after."""
    pool = await create_pool(
        settings.database_url,
        size=2,
        statement_cache=settings.database_statement_cache,
        timeout_s=settings.db_timeout_s,
    )
    try:
        # Maintenance across every user's rows, done by the kernel's role; who ran it is
        # recorded like any operator action.
        await pool.execute(
            "SELECT tf_audit($1, 'rotate_key', $2)", cli_actor(), {"current_kid": keyring.kid}
        )
        return await rotate_keys(pool, keyring, batch=batch)
    finally:
        await pool.close()


async def rotate_keys(pool: asyncpg.Pool, keyring: Keyring, *, batch: int = 500) -> list[Rotated]:
    """Re-seal every table; the counts per table, `left` counted after the last pass."""
    tasks = Rotated("tasks")
    for column in TASK_FIELDS:
        await _rotate_json(pool, keyring, tasks, "tasks", "id", column, batch)
    tool_calls = Rotated("tool_calls")
    await _rotate_json(pool, keyring, tool_calls, "tool_calls", "task_id", "result", batch)
    memories = Rotated("memories")
    await _rotate_memories(pool, keyring, memories, batch)
    hooks = Rotated("webhook_endpoints")  # their signing secrets
    for column in ("secret", "previous_secret"):
        await _rotate_json(pool, keyring, hooks, "webhook_endpoints", "id", column, batch)
    return [tasks, tool_calls, memories, hooks]


async def _rotate_json(
    pool: asyncpg.Pool,
    keyring: Keyring,
    count: Rotated,
    table: str,
    key: str,
    column: str,
    batch: int,
) -> None:
    select = (
        f"SELECT {key} AS id, {column} AS value FROM {table}"
        f" WHERE {key} > $3 AND {_stale(column)} ORDER BY {key} LIMIT $4"
    )
    update = (
        f"UPDATE {table} t SET {column} = v.new"
        " FROM jsonb_to_recordset($1::jsonb) AS v(id uuid, old jsonb, new jsonb)"
        f" WHERE t.{key} = v.id AND t.{column} = v.old"
    )
    for _ in range(MAX_PASSES):
        progress, last = 0, UUID(int=0)
        while rows := await pool.fetch(select, keyring.kid, _STALE_PATH, last, batch):
            last = rows[-1]["id"]
            changes = []
            for row in rows:
                try:
                    new, _n = keyring.reseal(row["value"], row=row["id"])
                except Unsealable as exc:
                    count.failed += 1
                    log.warning("rotate_unsealable", table=table, id=str(row["id"]), error=str(exc))
                    continue
                changes.append({"id": str(row["id"]), "old": row["value"], "new": new})
            if changes:
                status = await pool.execute(update, changes)
                progress += int(status.split()[-1])
        count.resealed += progress
        if not progress:
            break
    count.left += await pool.fetchval(
        f"SELECT count(*) FROM {table} WHERE {_stale(column)}", keyring.kid, _STALE_PATH
    )


_MEMORY_STALE = (
    "(NOT starts_with(fact_key, $1 || ':')"
    " OR NOT starts_with(fact, '{\"$sealed\":1,\"kid\":' || to_jsonb($1::text)::text || ','))"
)


async def _rotate_memories(
    pool: asyncpg.Pool, keyring: Keyring, count: Rotated, batch: int
) -> None:
    select = (
        "SELECT id, user_id, fact FROM memories"
        f" WHERE id > $2 AND {_MEMORY_STALE} ORDER BY id LIMIT $3"
    )
    for _ in range(MAX_PASSES):
        progress, last = 0, UUID(int=0)
        while rows := await pool.fetch(select, keyring.kid, last, batch):
            last = rows[-1]["id"]
            for row in rows:
                progress += await _reseal_memory(pool, keyring, count, row)
        count.resealed += progress
        if not progress:
            break
    count.left += await pool.fetchval(
        f"SELECT count(*) FROM memories WHERE {_MEMORY_STALE}", keyring.kid
    )


async def _reseal_memory(
    pool: asyncpg.Pool, keyring: Keyring, count: Rotated, row: asyncpg.Record
) -> int:
    try:
        text = str(keyring.open_text(row["fact"], row=row["id"], field=FACT))
    except Unsealable as exc:
        count.failed += 1
        log.warning("rotate_unsealable", table="memories", id=str(row["id"]), error=str(exc))
        return 0
    sealed = keyring.seal_text(text, row=row["id"], field=FACT)
    index = keyring.blind_index(fact_key(text), scope=row["user_id"])
    try:
        status = await pool.execute(
            "UPDATE memories SET fact = $2, fact_key = $3 WHERE id = $1 AND fact = $4",
            row["id"],
            sealed,
            index,
            row["fact"],
        )
    except asyncpg.UniqueViolationError:
        # The same fact was saved again under the current key meanwhile: this one goes.
        status = await pool.execute(
            "DELETE FROM memories WHERE id = $1 AND fact = $2", row["id"], row["fact"]
        )
    return int(status.split()[-1])

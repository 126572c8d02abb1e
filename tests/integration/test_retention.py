"""Retention (`taskfleet cleanup`, the API's periodic job) on the real PostgreSQL: only old
terminal tasks go, with what hangs off them, in batches; two cleanups at once share the work.

The rows here finished hundreds of days ago and the cleanups look back a year, so the rows
of other tests (all of today) are never candidates and the counts below are exact.
"""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from taskfleet.core.settings import Settings
from taskfleet.data import retention
from taskfleet.data.retention import CLEANUP_LOCK, RetentionJob, cleanup
from taskfleet.store.pool import create_pool
from tests.conftest import process_env

pytestmark = pytest.mark.postgres

YEAR_S = 365 * 86400.0
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(settings.database_url, size=4)
    yield pool
    await pool.close()


async def add_task(
    db: asyncpg.Pool,
    status: str,
    finished_days_ago: int | None,
    *,
    created_days_ago: int = 800,
    parent: UUID | None = None,
    messages: bool = False,
) -> UUID:
    """A task row as the fleet leaves it; `finished_days_ago` None: not finished."""
    task_id = uuid4()
    await db.execute(
        "INSERT INTO tasks (id, type, user_id, chat_id, parent_id, status, max_attempts,"
        " created_at, completed_at)"
        " VALUES ($1, 'chat_message', 'retention-user', 'retention-chat', $2, $3, 5,"
        "  now() - make_interval(days => $4),"
        "  now() - make_interval(days => $5))",
        task_id,
        parent,
        status,
        created_days_ago,
        finished_days_ago,
    )
    if messages:
        await db.execute(
            "INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)"
            " VALUES (gen_random_uuid(), 'retention-chat', 'retention-user', 'user', 'hi',"
            "  'completed', $1),"
            " (gen_random_uuid(), 'retention-chat', 'retention-user', 'assistant', 'hello',"
            "  'completed', $1)",
            task_id,
        )
    return task_id


async def existing(db: asyncpg.Pool, ids: list[UUID]) -> set[UUID]:
    rows = await db.fetch("SELECT id FROM tasks WHERE id = ANY($1::uuid[])", ids)
    return {row["id"] for row in rows}


async def count(db: asyncpg.Pool, sql: str, *args: Any) -> int:
    return int(await db.fetchval(sql, *args))


async def test_removes_only_old_terminal_tasks_and_what_hangs_off_them(
    db: asyncpg.Pool,
) -> None:
    gone = [await add_task(db, status, 400, messages=True) for status in TERMINAL]
    kept = {
        # finished, but within the year
        "recent": await add_task(db, "completed", 100, messages=True),
        # old, but not terminal (never finished)
        **{s: await add_task(db, s, None) for s in ("queued", "processing", "retrying")},
        "waiting": await add_task(db, "waiting", None),
        # not terminal, whatever its completed_at says
        "requeued": await add_task(db, "queued", 400),
    }
    # A dead letter not yet relayed: the task must stay until its outbox row is sent.
    unsent = await add_task(db, "failed", 400)
    await db.execute(
        "INSERT INTO outbox (task_id, queue, attempt, kind) VALUES ($1, 'chat_tasks.dlq', 5,"
        " 'dead_letter')",
        unsent,
    )
    kept["unsent"] = unsent
    # A parent whose child still runs stays, and so does the child; a finished family goes.
    kept["busy-parent"] = busy_parent = await add_task(db, "cancelled", 400)
    kept["running-child"] = await add_task(db, "processing", None, parent=busy_parent)
    done_parent = await add_task(db, "completed", 400)
    gone += [done_parent, await add_task(db, "completed", 401, parent=done_parent)]

    async with db.acquire() as conn:
        result = await cleanup(conn, YEAR_S, batch_size=2)

    assert result.deleted == len(gone) == 5
    # Two per batch: 4 leaves in 2 batches, the parent (a leaf once its child went) in a
    # third, then an empty pick.
    assert result.batches == 3
    assert await existing(db, gone) == set()
    assert await existing(db, list(kept.values())) == set(kept.values())
    # Their messages went with them (ON DELETE CASCADE); the kept tasks' messages stayed.
    assert (
        await count(db, "SELECT count(*) FROM messages WHERE task_id = ANY($1::uuid[])", gone) == 0
    )
    assert await count(db, "SELECT count(*) FROM messages WHERE task_id = $1", kept["recent"]) == 2
    assert await count(db, "SELECT count(*) FROM outbox WHERE task_id = $1", unsent) == 1

    # Once its dead letter is relayed (the relay deletes the row), the task goes too.
    await db.execute("DELETE FROM outbox WHERE task_id = $1", unsent)
    async with db.acquire() as conn:
        again = await cleanup(conn, YEAR_S)
    assert again.deleted == 1
    assert await existing(db, [unsent]) == set()
    await db.execute("DELETE FROM tasks WHERE id = ANY($1::uuid[])", list(kept.values()))


async def test_two_cleanups_at_once_share_the_work(db: asyncpg.Pool) -> None:
    ids = [await add_task(db, TERMINAL[i % 3], 400 + i % 7) for i in range(120)]

    async def one() -> int:
        async with db.acquire() as conn:
            return (await cleanup(conn, YEAR_S, batch_size=7)).deleted

    first, second = await asyncio.gather(one(), one())
    # Every row deleted exactly once between them, and no error from either.
    assert first + second == len(ids)
    assert await existing(db, ids) == set()


async def test_a_locked_task_is_skipped_not_waited_for(db: asyncpg.Pool) -> None:
    held, free = await add_task(db, "failed", 500), await add_task(db, "completed", 500)
    async with db.acquire() as holder, holder.transaction():
        # Another transaction holds the row (as a re-run being requested would).
        await holder.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", held)
        async with db.acquire() as conn:
            result = await asyncio.wait_for(cleanup(conn, YEAR_S), timeout=10)
        assert result.deleted == 1
        assert await existing(db, [held, free]) == {held}
    async with db.acquire() as conn:
        assert (await cleanup(conn, YEAR_S)).deleted == 1
    assert await existing(db, [held]) == set()


async def test_every_foreign_key_to_tasks_cascades(db: asyncpg.Pool) -> None:
    """Retention deletes task rows: a table that references tasks without ON DELETE CASCADE
    would make every cleanup fail, so each migration must keep to it (or to SET NULL, for a
    row that outlives the task it names: a batch and its `then` task)."""
    rows = await db.fetch(
        "SELECT conrelid::regclass::text AS tbl, conname, confdeltype::text AS on_delete"
        " FROM pg_constraint WHERE contype = 'f' AND confrelid = 'tasks'::regclass"
    )
    assert {r["tbl"] for r in rows} >= {"tasks", "messages", "outbox"}
    assert [(r["tbl"], r["conname"]) for r in rows if r["on_delete"] not in "cn"] == []
    assert {(r["tbl"], r["on_delete"]) for r in rows if r["on_delete"] == "n"} == {("batches", "n")}


async def test_every_foreign_key_to_tasks_has_an_index(db: asyncpg.Pool) -> None:
    """Deleting a task runs one statement per referencing table to cascade (or set NULL):
    without an index led by the referencing column, each reads its whole table, once per
    deleted task, and retention slows down as that table grows (migrations/0030)."""
    rows = await db.fetch(
        "SELECT c.conrelid::regclass::text AS tbl, a.attname AS col"
        " FROM pg_constraint c JOIN pg_attribute a"
        "  ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype = 'f' AND c.confrelid = 'tasks'::regclass"
        "  AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid"
        "                  AND i.indkey[0] = c.conkey[1])"
    )
    assert [(r["tbl"], r["col"]) for r in rows] == []


async def test_a_paced_cleanup_pauses_after_each_batch(
    db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [await add_task(db, "completed", 450) for _ in range(5)]
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(retention, "_pause", pause)
    async with db.acquire() as conn:
        result = await cleanup(conn, YEAR_S, batch_size=2, pause_ratio=2.0)
    assert (result.deleted, result.batches) == (5, 3)
    # One pause after each batch that deleted (not after the last, empty pick), each twice
    # as long as its batch: more than nothing.
    assert len(pauses) == 3
    assert min(pauses) > 0, pauses
    assert await existing(db, ids) == set()
    async with db.acquire() as conn:
        assert (await cleanup(conn, YEAR_S, pause_ratio=0.0)).deleted == 0
    assert len(pauses) == 3


async def test_the_periodic_job_runs_in_one_process_at_a_time(
    settings: Settings, db: asyncpg.Pool
) -> None:
    old = await add_task(db, "completed", 600)
    job = RetentionJob(settings.database_url, older_than_s=YEAR_S, interval_s=3600)
    async with db.acquire() as other:
        # Another API replica is cleaning up: this one skips its turn and deletes nothing.
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", CLEANUP_LOCK)
        assert await job.run_once() is None
        assert await existing(db, [old]) == {old}
        await other.execute("SELECT pg_advisory_unlock($1)", CLEANUP_LOCK)
    result = await job.run_once()
    assert result is not None
    assert result.deleted == 1
    # ... and it let go of the lock for the next run, whoever makes it.
    async with db.acquire() as other:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", CLEANUP_LOCK)
        await other.execute("SELECT pg_advisory_unlock($1)", CLEANUP_LOCK)


def taskfleet(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskfleet_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cleanup_command(settings: Settings, db: asyncpg.Pool) -> None:
    old, young = await add_task(db, "completed", 700), await add_task(db, "completed", 300)
    env = process_env(settings)

    done = taskfleet(["cleanup", "--older-than", "365d", "--batch-size", "50"], env)
    assert done.returncode == 0, done.stderr
    # Its last line (the lines before are the JSON logs).
    assert done.stdout.splitlines()[-1].startswith("cleanup: deleted 1 tasks finished before ")
    assert await existing(db, [old, young]) == {young}

    # The default comes from RETENTION_OLDER_THAN.
    done = taskfleet(["cleanup"], {**env, "RETENTION_OLDER_THAN": "200d"})
    last = done.stdout.splitlines()[-1]
    assert (done.returncode, last.split()[:3]) == (0, ["cleanup:", "deleted", "1"]), done.stdout
    assert await existing(db, [young]) == set()

    bad = taskfleet(["cleanup", "--older-than", "soon"], env)
    assert bad.returncode == 2
    assert "--older-than: bad duration 'soon'" in bad.stderr

    # Paced by RETENTION_PAUSE_RATIO unless --pause-ratio says otherwise; never below 0.
    bad = taskfleet(["cleanup", "--pause-ratio", "-1"], env)
    assert bad.returncode == 2
    assert "--pause-ratio: must be at least 0 (got -1)" in bad.stderr
    bad = taskfleet(["cleanup"], {**env, "RETENTION_PAUSE_RATIO": "-1"})
    assert bad.returncode == 2
    assert "RETENTION_PAUSE_RATIO" in bad.stderr

"""`taskfleet migrate`: migrations once each and never edited, function files (store/sql)
applied whenever they change, a database of the previous version adopted, `--status`."""

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from taskfleet.core.constants import QUEUES, TaskType
from taskfleet.core.settings import Settings
from taskfleet.store.migrate import MigrationEdited, migrate, status
from taskfleet.store.pool import drop_database, ensure_database, with_database
from taskfleet.store.schema import Schema, SqlFile
from tests.conftest import Infra, process_env

PACKAGED = Schema.packaged()
FUNCTIONS = [f.name for f in PACKAGED.functions]
MIGRATIONS = [m.name for m in PACKAGED.migrations]


@pytest.fixture(autouse=True)
def _leave_the_queues_empty() -> None:
    """These tests use no queue (and may run before any test declared the namespace's)."""


@pytest.fixture
async def dsn(infra: Infra) -> AsyncIterator[str]:
    """A database of this test's own (not created yet): migrate makes it."""
    url = with_database(infra.database_url, f"taskfleet_test_mig_{uuid.uuid4().hex[:10]}")
    yield url
    await drop_database(url)


async def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(sql)
        return rows
    finally:
        await conn.close()


def edited(schema: Schema, name: str, sql: str) -> Schema:
    """`schema` with the file `name` (a migration or a function file) holding `sql`."""

    def swap(files: list[SqlFile]) -> list[SqlFile]:
        return [SqlFile.of(f.name, sql.encode()) if f.name == name else f for f in files]

    return replace(schema, migrations=swap(schema.migrations), functions=swap(schema.functions))


def sql_of(name: str) -> str:
    return next(f.sql for f in [*PACKAGED.migrations, *PACKAGED.functions] if f.name == name)


async def migrate_like_the_previous_version(dsn: str) -> None:
    """What `migrate` did before it recorded checksums and knew of function files."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in PACKAGED.migrations:
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", m.name)
    finally:
        await conn.close()


async def test_a_fresh_database_gets_every_migration_and_every_function_file(dsn: str) -> None:
    applied = await migrate(dsn)
    assert applied.migrations == MIGRATIONS
    assert applied.functions == FUNCTIONS
    assert "tf_claim" in FUNCTIONS
    assert len(FUNCTIONS) >= 20
    recorded = await fetch(dsn, "SELECT name, checksum FROM schema_functions")
    assert dict(recorded) == {f.name: f.checksum for f in PACKAGED.functions}
    recorded = await fetch(dsn, "SELECT version, checksum FROM schema_migrations")
    assert dict(recorded) == {m.name: m.checksum for m in PACKAGED.migrations}
    # Every file is named after the function it defines.
    defined = {r["proname"] for r in await fetch(dsn, "SELECT proname FROM pg_proc")}
    assert set(FUNCTIONS) <= defined
    again = await migrate(dsn)
    assert (again.migrations, again.functions) == ([], [])


async def test_a_changed_function_file_is_applied_again_and_only_it(dsn: str) -> None:
    await migrate(dsn)
    before = dict(await fetch(dsn, "SELECT name, applied_at FROM schema_functions"))
    body = sql_of("tf_queue_of").replace("'chat_tasks'", "'chat_tasks_v2'")
    changed = edited(PACKAGED, "tf_queue_of", body)
    assert [s.state for s in await status(dsn, changed) if s.name == "tf_queue_of"] == ["changed"]

    applied = await migrate(dsn, changed)

    assert (applied.migrations, applied.functions) == ([], ["tf_queue_of"])
    rows = await fetch(dsn, "SELECT tf_queue_of('chat_message') AS q")
    assert rows[0]["q"] == "chat_tasks_v2"
    after = dict(await fetch(dsn, "SELECT name, applied_at FROM schema_functions"))
    assert {n for n in FUNCTIONS if after[n] != before[n]} == {"tf_queue_of"}
    assert {s.state for s in await status(dsn, changed)} == {"applied", "current"}


async def queues_in_sql(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT t, tf_queue_of(t) FROM unnest($1::text[]) t", list(QUEUES))
    finally:
        await conn.close()
    return dict(rows)


async def test_the_type_to_queue_map_of_sql_is_the_one_of_constants(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await migrate(dsn)
    assert await queues_in_sql(dsn) == {t.value: spec.name for t, spec in QUEUES.items()}

    monkeypatch.setitem(QUEUES, TaskType.TOOL, replace(QUEUES[TaskType.TOOL], name="tools_v2"))
    applied = await migrate(dsn)

    assert applied.functions == ["tf_queue_of"]
    assert (await queues_in_sql(dsn))["tool_execution"] == "tools_v2"


async def test_function_files_may_call_each_other_in_any_order(dsn: str) -> None:
    """A new sql function whose file sorts before the one it calls is still created."""
    await migrate(dsn)
    caller = SqlFile.of(
        "tf_a_caller",
        b"CREATE OR REPLACE FUNCTION tf_a_caller() RETURNS int"
        b" LANGUAGE sql AS $$ SELECT tf_z_callee() + 1 $$;",
    )
    callee = SqlFile.of(
        "tf_z_callee",
        b"CREATE OR REPLACE FUNCTION tf_z_callee() RETURNS int LANGUAGE sql AS $$ SELECT 41 $$;",
    )
    schema = replace(PACKAGED, functions=[caller, *PACKAGED.functions, callee])
    assert (await migrate(dsn, schema)).functions == ["tf_a_caller", "tf_z_callee"]
    assert (await fetch(dsn, "SELECT tf_a_caller() AS n"))[0]["n"] == 42


async def test_a_function_file_that_fails_changes_nothing(dsn: str) -> None:
    await migrate(dsn)
    broken = edited(PACKAGED, "tf_queue_of", "CREATE OR REPLACE FUNCTION tf_queue_of(")
    body = sql_of("tf_worker_live").replace("2.5", "3.5")
    schema = edited(broken, "tf_worker_live", body)
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await migrate(dsn, schema)
    states = {s.name: s.state for s in await status(dsn, schema) if s.kind == "function"}
    assert (states["tf_worker_live"], states["tf_queue_of"]) == ("changed", "changed")
    rows = await fetch(dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'tf_worker_live'")
    assert "2.5" in rows[0]["prosrc"]


async def test_an_edited_migration_is_refused_before_anything_is_applied(dsn: str) -> None:
    await migrate(dsn)
    schema = edited(PACKAGED, "0002_task_functions", sql_of("0002_task_functions") + "\n-- x\n")
    newer = SqlFile.of("9999_test_later", b"CREATE TABLE later_migration (id int);")
    schema = replace(schema, migrations=[*schema.migrations, newer])
    assert "edited" in {s.state for s in await status(dsn, schema) if s.name.startswith("0002")}

    with pytest.raises(MigrationEdited) as refused:
        await migrate(dsn, schema)

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("migration 0002_task_functions.sql differs from the one applied")
    assert "new migration" in message
    assert (await fetch(dsn, "SELECT to_regclass('later_migration') AS t"))[0]["t"] is None


async def test_a_database_of_the_previous_version_is_adopted(dsn: str) -> None:
    await migrate_like_the_previous_version(dsn)
    states = await status(dsn)
    assert {s.state for s in states if s.kind == "migration"} == {"applied"}
    assert {s.state for s in states if s.kind == "function"} == {"new"}

    applied = await migrate(dsn)

    assert (applied.migrations, applied.functions) == ([], FUNCTIONS)
    recorded = await fetch(dsn, "SELECT version, checksum FROM schema_migrations")
    assert dict(recorded) == {m.name: m.checksum for m in PACKAGED.migrations}
    # Adopted checksums hold from now on.
    schema = edited(PACKAGED, "0015_liveness", sql_of("0015_liveness") + " ")
    with pytest.raises(MigrationEdited):
        await migrate(dsn, schema)


async def test_concurrent_runs_apply_each_file_once(dsn: str) -> None:
    await ensure_database(dsn)  # two CREATE DATABASE racing is ensure_database's own affair
    runs = await asyncio.gather(migrate(dsn), migrate(dsn))
    assert sorted([r.functions for r in runs], key=len) == [[], FUNCTIONS]
    assert sorted([r.migrations for r in runs], key=len) == [[], MIGRATIONS]


def run_migrate(settings: Settings, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = process_env(settings, DATABASE_URL=dsn, LOG_LEVEL="warning")
    return subprocess.run(
        [sys.executable, "-m", "taskfleet_cli", "migrate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def taskfleet_migrate(settings: Settings, dsn: str, *args: str) -> list[str]:
    done = run_migrate(settings, dsn, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


async def test_the_command_refuses_an_edited_migration_in_one_line(
    settings: Settings, dsn: str
) -> None:
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:  # as if 0002 had been edited since: the database applied other content
        await conn.execute(
            "UPDATE schema_migrations SET checksum = repeat('0', 64)"
            " WHERE version = '0002_task_functions'"
        )
    finally:
        await conn.close()
    done = await asyncio.to_thread(run_migrate, settings, dsn)
    assert done.returncode == 3
    assert done.stderr.splitlines()[-1].startswith(
        "taskfleet: cannot start: migration 0002_task_functions.sql differs from the one applied"
        " to this database (sha256 000000000000 applied,"
    )


async def test_status_lists_each_migration_and_function_file(settings: Settings, dsn: str) -> None:
    lines = await asyncio.to_thread(taskfleet_migrate, settings, dsn, "--status")
    assert [line.split() for line in lines] == [
        *(["migration", m, "pending"] for m in MIGRATIONS),
        *(["function", f, "new"] for f in FUNCTIONS),
    ]
    assert await ensure_database(dsn), "--status must not create the database"

    lines = await asyncio.to_thread(taskfleet_migrate, settings, dsn)
    assert f"migrations applied: {', '.join(MIGRATIONS)}" in lines
    assert f"functions applied: {', '.join(FUNCTIONS)}" in lines
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM schema_migrations WHERE version = '0015_liveness'")
        await conn.execute("UPDATE schema_functions SET checksum = 'x' WHERE name = 'tf_claim'")
        await conn.execute("DELETE FROM schema_functions WHERE name = 'tf_wait'")
    finally:
        await conn.close()

    lines = await asyncio.to_thread(taskfleet_migrate, settings, dsn, "--status")
    states = {tuple(line.split()[:2]): line.split()[2] for line in lines}
    assert states.pop(("migration", "0015_liveness")) == "pending"
    assert states.pop(("function", "tf_claim")) == "changed"
    assert states.pop(("function", "tf_wait")) == "new"
    assert set(states.values()) == {"applied", "current"}


async def test_the_stats_index_main_carried_for_a_while_is_dropped(dsn: str) -> None:
    """0017_2_stats.sql was on main for a few merges (a BRIN index on created_at); a database
    that applied it loses the index at the next migrate (0017_4), one that did not is fine."""
    brin = "CREATE INDEX tasks_created_brin ON tasks USING brin (created_at)"
    then = [m for m in PACKAGED.migrations if m.name < "0017_3"]
    await migrate(dsn, Schema([*then, SqlFile.of("0017_2_stats", brin.encode())], []))
    index = "SELECT to_regclass('tasks_created_brin') IS NOT NULL AS present"
    assert (await fetch(dsn, index))[0]["present"]

    applied = await migrate(dsn)

    assert applied.migrations == [m.name for m in PACKAGED.migrations if m.name >= "0017_3"]
    assert not (await fetch(dsn, index))[0]["present"]

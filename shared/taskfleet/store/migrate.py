"""`taskfleet migrate`: create the database if missing, apply each migration once, then every
function file whose content changed (store/sql/README.md).

Migrations (store/migrations/) are history: deployed databases applied them, so each is
recorded with its sha256 and a file that no longer matches is refused. Function files
(store/sql/) are code: the current definition of each function, applied again whenever its
sha256 changes. Concurrent runs are safe: all of it happens under one advisory lock.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from taskfleet.core.errors import StartupError
from taskfleet.store.pool import ensure_database
from taskfleet.store.schema import Schema, SqlFile

log = structlog.get_logger("taskfleet.migrate")

# Any constant will do: it only has to be the same for every process that migrates.
_MIGRATION_LOCK = 0x7A5F1EE7

# Idempotent, so that a database of any earlier version is brought to the same bookkeeping:
# one migrated before checksums were recorded gets a NULL checksum column (adopted below).
_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text;
CREATE TABLE IF NOT EXISTS schema_functions (
    name text PRIMARY KEY, checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());
"""


class MigrationEdited(StartupError):
    """A migration file differs from the one this database applied."""


@dataclass(frozen=True)
class Applied:
    """What one run applied: migration versions and function files, in order."""

    migrations: list[str]
    functions: list[str]


async def migrate(dsn: str, schema: Schema | None = None) -> Applied:
    """Apply pending migrations, then changed function files. Safe concurrently and again."""
    schema = schema or Schema.packaged()
    if await ensure_database(dsn):
        log.info("database_created", dsn=dsn.rsplit("@", 1)[-1])
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(_BOOKKEEPING)
        await _verify_applied(conn, schema.migrations)
        migrations = await _apply_migrations(conn, schema.migrations)
        functions = await _apply_functions(conn, schema.functions)
    finally:
        await conn.close()
    return Applied(migrations, functions)


async def _verify_applied(conn: asyncpg.Connection, files: Sequence[SqlFile]) -> None:
    """Refuse an applied migration whose file changed; adopt the file's checksum where none
    was recorded (applied by a version that did not record them: the file is all we have)."""
    recorded = dict(await conn.fetch("SELECT version, checksum FROM schema_migrations"))
    for f in files:
        if f.name not in recorded:
            continue
        if recorded[f.name] is None:
            await conn.execute(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", f.name, f.checksum
            )
        elif recorded[f.name] != f.checksum:
            raise MigrationEdited(
                f"migration {f.name}.sql differs from the one applied to this database"
                f" (sha256 {recorded[f.name][:12]} applied, {f.checksum[:12]} on disk):"
                " restore it and put the change in a new migration"
            )


async def _apply_migrations(conn: asyncpg.Connection, files: Sequence[SqlFile]) -> list[str]:
    done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    applied: list[str] = []
    for f in files:
        if f.name in done:
            continue
        async with conn.transaction():
            await conn.execute(f.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                f.name,
                f.checksum,
            )
        applied.append(f.name)
        log.info("migration_applied", version=f.name)
    return applied


async def _apply_functions(conn: asyncpg.Connection, files: Sequence[SqlFile]) -> list[str]:
    recorded = dict(await conn.fetch("SELECT name, checksum FROM schema_functions"))
    changed = [f for f in files if recorded.get(f.name) != f.checksum]
    async with conn.transaction():
        # A file may call a function of a file after it: the first pass creates them all
        # unchecked (as pg_restore does), the second checks every body against all of them.
        for check in ("off", "on"):
            await conn.execute(f"SET LOCAL check_function_bodies = {check}")
            for f in changed:
                await conn.execute(f.sql)
        await conn.executemany(
            "INSERT INTO schema_functions (name, checksum) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET checksum = $2, applied_at = now()",
            [(f.name, f.checksum) for f in changed],
        )
        # A file removed (its function dropped by a migration) leaves no record behind, so
        # that the same file brought back is applied again.
        await conn.execute(
            "DELETE FROM schema_functions WHERE name <> ALL($1::text[])", [f.name for f in files]
        )
    for f in changed:
        log.info("function_applied", name=f.name)
    return [f.name for f in changed]


@dataclass(frozen=True)
class FileState:
    """Where a file stands in a database: a migration is applied, pending or edited (applied,
    since changed: migrate refuses it); a function file is current, changed or new."""

    kind: str
    name: str
    state: str


async def status(dsn: str, schema: Schema | None = None) -> list[FileState]:
    """Each migration and function file against the database, which this does not change."""
    schema = schema or Schema.packaged()
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        migrations: dict[str, str | None] = {}
        functions: dict[str, str | None] = {}
    else:
        try:
            migrations = await _recorded(conn, "schema_migrations", "version")
            functions = await _recorded(conn, "schema_functions", "name")
        finally:
            await conn.close()
    return [_migration_state(m, migrations) for m in schema.migrations] + [
        _function_state(f, functions) for f in schema.functions
    ]


async def _recorded(conn: asyncpg.Connection, table: str, key: str) -> dict[str, str | None]:
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return {}
    # Through jsonb: a schema_migrations of a version that recorded no checksum has no column.
    rows = await conn.fetch(f"SELECT {key}, to_jsonb(t) ->> 'checksum' FROM {table} t")
    return dict(rows)


def _migration_state(f: SqlFile, recorded: dict[str, str | None]) -> FileState:
    if f.name not in recorded:
        return FileState("migration", f.name, "pending")
    edited = recorded[f.name] not in (None, f.checksum)  # None: adopted at the next migrate
    return FileState("migration", f.name, "edited" if edited else "applied")


def _function_state(f: SqlFile, recorded: dict[str, str | None]) -> FileState:
    if f.name not in recorded:
        return FileState("function", f.name, "new")
    return FileState("function", f.name, "current" if recorded[f.name] == f.checksum else "changed")

"""`taskfleet migrate`: create the database if missing, apply SQL migrations once each."""

from importlib import resources

import asyncpg
import structlog

from taskfleet.store.pool import ensure_database

log = structlog.get_logger("taskfleet.migrate")

# Any constant will do: it only has to be the same for every process that migrates.
_MIGRATION_LOCK = 0x7A5F1EE7


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every file in taskfleet/migrations, in name order."""
    folder = resources.files("taskfleet.store").joinpath("migrations")
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text()) for p in files]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; safe to run concurrently and again. Returns what it applied."""
    if await ensure_database(dsn):
        log.info("database_created", dsn=dsn.rsplit("@", 1)[-1])
    conn = await asyncpg.connect(dsn, timeout=10)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
            log.info("migration_applied", version=version)
    finally:
        await conn.close()
    return applied

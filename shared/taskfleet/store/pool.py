"""PostgreSQL connections: one asyncpg pool per process, JSON as orjson, no per-task setup."""

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from taskfleet.core import tracing
from taskfleet.core.metrics import DB_POOL_CONNECTIONS
from taskfleet.store.tenancy import SERVICE_ROLE

# Errors that mean "our database cannot be used right now", not "this statement is wrong": the
# work waits for it (a worker pauses, the API answers 503) instead of failing anyone's task.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: the link failed or was refused
    asyncpg.InterfaceError,  # our end of the link is closed
    asyncpg.OperatorInterventionError,  # class 57: shutdown, crash recovery, cannot connect now
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.ReadOnlySQLTransactionError,  # a standby answered: a failover is under way
    asyncpg.InternalClientError,  # a session cut mid-statement (DroppingConnection below)
    OSError,  # refused, reset, unreachable (and taskfleet.store.coalesce.BatchInterrupted)
    TimeoutError,
)


class MissingRole(RuntimeError):
    """The database was never migrated: the kernel's role is missing."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # The kernel's role, not the login's: it is no superuser and owns nothing, so the row
    # security of migrations/0012 holds for it, and a user's transaction narrows it further
    # (taskfleet.store.tenancy). scs on: tenancy quotes literals the standard way.
    try:
        await conn.execute(f"SET ROLE {SERVICE_ROLE}; SET standard_conforming_strings = on")
    except asyncpg.UndefinedObjectError:
        raise MissingRole(
            f"role {SERVICE_ROLE} does not exist: run `taskfleet migrate` first"
        ) from None
    if tracing.enabled():  # off, asyncpg times nothing: it checks for loggers first
        conn.add_query_logger(tracing.statement_span)
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Released connections keep their session as it is.

    asyncpg's default reset (RESET ALL, UNLISTEN, unlock advisory locks...) is a second
    round trip after every pooled statement. We keep no session state on pooled connections
    but what `_init_connection` set (no other SET, no LISTEN; session advisory locks are
    unlocked by whoever takes one), and asyncpg still rolls back a transaction left open
    before calling this. RESET ALL would also undo the role.
    """


class DroppingConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection that closes itself when asyncpg's protocol state is corrupt.

    When PostgreSQL ends a session in the middle of a transaction, asyncpg can hand the
    connection back to the pool in a state where every later statement fails with
    InternalClientError ("cannot switch to state ..."; MagicStack/asyncpg#784). Terminating it
    makes the pool open a fresh one instead of failing every request that draws it.
    """

    async def execute(self, *args: Any, **kwargs: Any) -> str:
        """asyncpg's execute, but a connection whose protocol state is corrupt is terminated."""
        try:
            return await super().execute(*args, **kwargs)  # type: ignore[no-any-return]
        except asyncpg.InternalClientError:
            self.terminate()
            raise

    async def _execute(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._execute(*args, **kwargs)
        except asyncpg.InternalClientError:
            self.terminate()
            raise


async def create_pool(
    dsn: str, *, size: int = 10, timeout_s: float = 10.0, statement_cache: int = 100
) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb with orjson.

    `statement_cache` 0 prepares no named statement: what a pooler in transaction mode needs
    when it does not track them (DATABASE_STATEMENT_CACHE)."""
    pool = await asyncpg.create_pool(
        dsn,
        statement_cache_size=statement_cache,
        min_size=1,
        max_size=size,
        init=_init_connection,
        reset=_keep_session,
        connection_class=DroppingConnection,
        timeout=timeout_s,
        command_timeout=timeout_s,
        # A killed PostgreSQL leaves dead connections behind; recycle idle ones.
        max_inactive_connection_lifetime=60,
    )
    assert pool is not None
    return pool


async def connect_session(dsn: str, *, timeout_s: float = 10.0) -> asyncpg.Connection:
    """A connection of its own, as the kernel's role, for what lives in its session (session
    advisory locks): give it DATABASE_DIRECT_URL, never a pooler in transaction mode."""
    conn = await asyncpg.connect(dsn, timeout=timeout_s, command_timeout=timeout_s)
    try:
        await _init_connection(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


def export_pool_use(pool: asyncpg.Pool) -> None:
    """`taskfleet_db_pool_connections{state}`, read from `pool` at every scrape (a process has
    one pool; the last one given wins)."""
    DB_POOL_CONNECTIONS.labels("in_use").set_function(
        lambda: pool.get_size() - pool.get_idle_size()
    )
    DB_POOL_CONNECTIONS.labels("idle").set_function(pool.get_idle_size)
    DB_POOL_CONNECTIONS.labels("max").set_function(pool.get_max_size)


def database_name(dsn: str) -> str:
    """The database a DSN names; `postgres` when it names none."""
    return urlsplit(dsn).path.lstrip("/") or "postgres"


def with_database(dsn: str, name: str) -> str:
    """The same DSN (host, user, options) naming database `name` instead."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def ensure_database(dsn: str) -> bool:
    """Create the database named in `dsn` when missing. Returns True if it was created."""
    name = database_name(dsn)
    conn = await asyncpg.connect(with_database(dsn, "postgres"), timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{_ident(name)}"')
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await conn.close()


async def drop_database(dsn: str) -> None:
    """Drop the database named in `dsn` if it exists, ending its sessions (tests drop theirs)."""
    name = database_name(dsn)
    conn = await asyncpg.connect(with_database(dsn, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{_ident(name)}" WITH (FORCE)')
    finally:
        await conn.close()


def _ident(name: str) -> str:
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"unsafe database name: {name!r}")
    return name


def record(row: asyncpg.Record | None) -> dict[str, Any] | None:
    """A row as a plain dict; None stays None (no such row)."""
    return dict(row) if row is not None else None

"""Whose rows a statement may touch: user-scoped and audited transactions (migrations/0012).

Pooled connections run as `taskfleet_service`, the kernel's role. A user's work (API user
routes, handlers) goes through `for_user(pool, user_id)`: every call is one transaction that
takes `taskfleet_app` with SET LOCAL and names its user, so PostgreSQL's row-level security
shows it that user's rows and no others, whatever its SQL forgets. Operator paths go through
`audited(pool, actor, action)`: `taskfleet_admin`, after writing who did what.

Both have the part of asyncpg.Pool's interface the code uses (fetch, fetchrow, fetchval,
execute, acquire), so a function that takes a `Db` runs unchanged under either.
"""

import contextlib
import getpass
import re
import socket
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import asyncpg
import orjson

from taskfleet.core.messages import ID_PATTERN

SERVICE_ROLE = "taskfleet_service"
APP_ROLE = "taskfleet_app"
ADMIN_ROLE = "taskfleet_admin"


class Db(Protocol):
    """The statements a data-access function may run: a pool, or a scope over one."""

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Every row the query gives (asyncpg Records)."""
        ...

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """The first row the query gives, or None when it gives none."""
        ...

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row, or None when there is no row."""
        ...

    async def execute(self, query: str, *args: Any) -> str:
        """Run a statement; its status tag (e.g. `UPDATE 3`)."""
        ...

    def acquire(self) -> AbstractAsyncContextManager[Any]:
        """A connection for several statements; a scope gives one inside its own transaction."""
        ...


class _Scope:
    """A pool's interface where every call is one transaction entered with `enter`.

    `enter` is simple-protocol SQL without parameters, so BEGIN and the SET LOCALs go to the
    server as one round trip. `acquire()` hands out a connection inside such a transaction
    (asyncpg's own, so that the caller's `conn.transaction()` nests as a savepoint).
    """

    def __init__(self, pool: asyncpg.Pool, enter: str) -> None:
        self.pool = pool
        self._enter = enter

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._one() as conn:
            return await conn.fetch(query, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self._one() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self._one() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self._one() as conn:
            return await conn.execute(query, *args)  # type: ignore[no-any-return]

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(self._enter)
            yield conn

    @asynccontextmanager
    async def _one(self) -> AsyncIterator[asyncpg.Connection]:
        # asyncpg's transaction() would cost a round trip of its own for BEGIN.
        async with self.pool.acquire() as conn:
            await conn.execute(f"BEGIN; {self._enter}")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):  # a broken connection rolls back anyway
                    await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")


class UserDb(_Scope):
    """Statements of one user's work: only that user's rows exist for them."""

    def __init__(self, pool: asyncpg.Pool, user_id: str) -> None:
        # The pattern admits no quote or backslash: the literal below cannot be escaped.
        if not re.fullmatch(ID_PATTERN, user_id):
            raise ValueError(f"not a user id: {user_id!r}")
        super().__init__(
            pool, f"SET LOCAL ROLE {APP_ROLE}; SET LOCAL taskfleet.user_id = '{user_id}'"
        )
        self.user_id = user_id


def for_user(pool: asyncpg.Pool, user_id: str) -> UserDb:
    """Statements scoped to `user_id`: row security shows them that user's rows only.

    Raises ValueError for a string that is not a user id (it is written into the SQL).
    """
    return UserDb(pool, user_id)


class AuditedDb(_Scope):
    """Operator statements across users; each transaction first records who did what."""

    def __init__(self, pool: asyncpg.Pool, actor: str, action: str, detail: dict[str, Any]) -> None:
        literal = _literal(orjson.dumps({"actor": actor, "action": action, **detail}).decode())
        super().__init__(
            pool,
            f"SET LOCAL ROLE {ADMIN_ROLE};"
            f" SELECT tf_audit(d->>'actor', d->>'action', d - 'actor' - 'action')"
            f" FROM (SELECT {literal}::jsonb AS d) AS a",
        )


def audited(pool: asyncpg.Pool, actor: str, action: str, **detail: Any) -> AuditedDb:
    """Statements of an operator across users; each transaction first records who did what.

    `actor` is who (cli_actor() for a command), `action` what, and `detail` any more of it.
    """
    return AuditedDb(pool, actor, action, detail)


def cli_actor() -> str:
    """Who runs an operator command, for the audit log: the account on this machine."""
    return f"cli:{getpass.getuser()}@{socket.gethostname()}"


def _literal(text: str) -> str:
    """A standard SQL string literal (standard_conforming_strings is on: see create_pool)."""
    if "\x00" in text:
        raise ValueError("NUL in an audit detail")
    return "'" + text.replace("'", "''") + "'"

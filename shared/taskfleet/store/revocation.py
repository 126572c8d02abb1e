"""Revoked tokens: a deny-list by `jti`, kept in PostgreSQL so every API replica sees it.

Each replica holds the list in memory and refreshes it every REFRESH_S, so a revocation
takes effect everywhere within that time without a query per request. A row is kept only
until its token would have expired anyway.
"""

import asyncio
from datetime import UTC, datetime

import asyncpg
import structlog

from taskfleet.security.auth import Principal
from taskfleet.store.pool import create_pool

log = structlog.get_logger("taskfleet.revocation")

REFRESH_S = 2.0


async def revoke(pool: asyncpg.Pool, jti: str, expires_at: float, reason: str = "") -> None:
    """Deny a token's `jti` until `expires_at` (epoch seconds); revoking it twice is a no-op."""
    await pool.execute(
        "INSERT INTO revoked_tokens (jti, expires_at, reason) VALUES ($1, $2, $3)"
        " ON CONFLICT (jti) DO NOTHING",
        jti,
        datetime.fromtimestamp(expires_at, UTC),
        reason,
    )


async def revoke_token(dsn: str, who: Principal, reason: str = "") -> None:
    """Revoke `who`'s token from a command line: one connection, then closed.

    Every API replica refuses it within REFRESH_S seconds.
    """
    pool = await create_pool(dsn, size=1)
    try:
        await revoke(pool, who.jti, who.expires_at, reason)
    finally:
        await pool.close()


class DenyList:
    """The replica's copy of the deny-list; `denied` is what the token verifier asks."""

    def __init__(self) -> None:
        self._jtis: frozenset[str] = frozenset()

    def denied(self, jti: str) -> bool:
        """Whether the token with this `jti` was revoked, as of the last refresh."""
        return jti in self._jtis

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """Reload the list from the database, first deleting rows whose tokens expired anyway."""
        await pool.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
        rows = await pool.fetch("SELECT jti FROM revoked_tokens")
        self._jtis = frozenset(r["jti"] for r in rows)

    async def keep_fresh(self, pool: asyncpg.Pool) -> None:
        """A supervised loop of the API."""
        while True:
            try:
                await self.refresh(pool)
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                # Keep the last list: revoked tokens stay refused while the database is away.
                log.warning("deny_list_refresh_failed", error=repr(exc))
            await asyncio.sleep(REFRESH_S)

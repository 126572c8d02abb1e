"""The one-time sign-in codes' rows (taskfleet/security/signin.py says what they hold)."""

import asyncpg

from taskfleet.security.signin import SealedCode, lookup_of, new_code, open_token

CODE_TTL_S = 60.0


async def put_code(pool: asyncpg.Pool, token: str, *, ttl_s: float = CODE_TTL_S) -> str:
    """Store a code that redeems `token` once within `ttl_s` seconds; return the code."""
    code, row = new_code(token)
    await _insert(pool, row, ttl_s)
    return code


# Expired rows go here too, so that codes nobody redeemed do not pile up.
_PUT = """
WITH expired AS (DELETE FROM signin_codes WHERE expires_at <= now())
INSERT INTO signin_codes (lookup, sealed, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
"""


async def _insert(pool: asyncpg.Pool, row: SealedCode, ttl_s: float) -> None:
    await pool.execute(_PUT, row.lookup, row.sealed, ttl_s)


# One statement: the code's row goes whether fresh or not (so a second redeem finds nothing,
# even one racing the first), and every expired row with it.
_TAKE = """
WITH gone AS (
    DELETE FROM signin_codes WHERE lookup = $1 OR expires_at <= now()
    RETURNING lookup, sealed, expires_at
)
SELECT sealed FROM gone WHERE lookup = $1 AND expires_at > now()
"""


async def redeem_code(pool: asyncpg.Pool, code: str) -> str | None:
    """The token the code was made for, once; None if unknown, used already or expired."""
    sealed = await pool.fetchval(_TAKE, lookup_of(code))
    return None if sealed is None else open_token(code, sealed)

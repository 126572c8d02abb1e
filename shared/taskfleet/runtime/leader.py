"""One leader per fleet: the holder of a PostgreSQL session advisory lock runs a loop that
must run once in the whole fleet (the schedule runner; the camera scheduler does the same).

Every replica runs `lead`; only the holder of the lock works. The lock lives on a connection
of its own and the work is handed that same connection, so a holder that lost its session
(killed, cut off, database restarted) has lost the lock *and* cannot write: there is never a
second writer. A killed holder's session ends with its socket, so a standby, retrying every
`retry_s`, takes over within about that long.
"""

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from taskfleet.store.pool import create_pool

log = structlog.get_logger("taskfleet.leader")

# Errors that mean "our session is gone or the database is away": step down and try again.
RECOVERABLE = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# On the lock's session: PostgreSQL notices a holder whose host vanished (no TCP answer) in
# about 5 + 2·3 s and ends the session, freeing the lock; the OS default is hours.
KEEPALIVES = (
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
)

Work = Callable[[asyncpg.Connection], Awaitable[None]]


async def lead(
    name: str, lock: int, work: Work, *, database_url: str, retry_s: float, timeout_s: float
) -> None:
    """Forever (a supervised loop): wait for the lock, run `work(conn)` while holding it (it
    should not return), start over when the session is lost."""
    while True:
        try:
            await _serve(name, lock, work, database_url, retry_s, timeout_s)
        except RECOVERABLE as exc:
            log.warning("leader_lost", name=name, error=repr(exc))
        # Our own retry rather than the supervisor's restart: its backoff grows to 30 s,
        # and a takeover must stay within a few seconds.
        await asyncio.sleep(retry_s)


async def _serve(
    name: str, lock: int, work: Work, database_url: str, retry_s: float, timeout_s: float
) -> None:
    # A pool of one, only for its connection setup (JSON codecs, timeouts): the connection
    # is held for the whole leadership, never returned while leading.
    pool = await create_pool(database_url, size=1, timeout_s=timeout_s)
    try:
        conn = await pool.acquire()
        await conn.execute(KEEPALIVES)
        said_standby = False
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock):
            if not said_standby:
                log.info("leader_standby", name=name)
                said_standby = True
            await asyncio.sleep(retry_s)
        log.info("leader_elected", name=name)
        await work(conn)
    finally:
        # Closing the socket ends the session at once, and with it the lock: a standby
        # takes over without waiting for a timeout.
        pool.terminate()

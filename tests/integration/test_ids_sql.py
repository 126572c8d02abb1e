"""tf_uuid7() (store/sql/tf_uuid7.sql): the database makes the same time-ordered ids as
taskfleet.core.ids.uuid7, for the message rows it inserts itself."""

import time
from uuid import RFC_4122, UUID

import asyncpg
import pytest

from taskfleet.core.settings import Settings

pytestmark = pytest.mark.postgres


async def test_tf_uuid7_is_a_version_7_of_now(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        before_ms = time.time_ns() // 1_000_000
        made: list[UUID] = [
            r[0] for r in await conn.fetch("SELECT tf_uuid7() FROM generate_series(1, 20)")
        ]
        after_ms = time.time_ns() // 1_000_000
    finally:
        await conn.close()
    assert {(u.version, u.variant) for u in made} == {(7, RFC_4122)}
    # Its first 48 bits are the millisecond it was made (this machine's clock and the
    # database's are the same clock), so ids of later milliseconds sort after.
    assert all(before_ms - 5 <= u.int >> 80 <= after_ms + 5 for u in made), made
    assert len(set(made)) == 20

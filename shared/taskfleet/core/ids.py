"""Time-ordered ids (UUIDv7, RFC 9562) for rows that are inserted at the rate of the work.

A random id (UUIDv4) lands at a random place of every B-tree that holds it (a table's primary
key, the foreign keys that point at it): with months of history those indexes outgrow the
buffer pool, and each insert reads a page back and, after every checkpoint, writes it whole
to the WAL. A UUIDv7 begins with the millisecond it was made, so new ids go to the right-hand
edge of those indexes, whose few pages stay in memory however large the history is
(docs/benchmarks.md, "Cost as the history grows"). Its other 74 bits are random, so ids made
in the same millisecond on other machines do not collide.

The SQL side makes the same with `tf_uuid7()` (store/sql/tf_uuid7.sql). Nothing in the fleet
reads the time back from an id or relies on ids being unpredictable: a task is its owner's
by row security, never by knowing its id.
"""

import os
import time
from uuid import UUID

_MS_BITS = (1 << 48) - 1
_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def uuid7(now_ns: int | None = None) -> UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, version 7, 74 random bits."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms & _MS_BITS) << 80
        | 0x7 << 76
        | (rand >> 62 & _RAND_A) << 64
        | 0b10 << 62  # the RFC 4122/9562 variant
        | rand & _RAND_B
    )
    return UUID(int=value)

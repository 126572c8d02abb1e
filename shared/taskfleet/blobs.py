"""Where uploaded bytes live: reachable by the API that receives them and the worker that reads
them. Messages carry ids only, never the bytes.

`BlobStore` is the interface; `PostgresBlobStore` the default (one more table, no new service,
and a blob commits or rolls back with the row that names it). Object storage fits the same
interface: its `put` uploads before the caller's transaction commits (a rollback then leaves an
orphan object for a sweep to remove, never a row without its bytes), and its `delete` runs
after that transaction commits.
"""

from typing import Protocol

import asyncpg


class BlobStore(Protocol):
    async def put(self, conn: asyncpg.Connection, key: str, data: bytes) -> None:
        """Store `data` under `key`, inside the caller's transaction when the store can."""

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None if there are none."""

    async def delete(self, conn: asyncpg.Connection, key: str) -> None:
        """Forget `key` (no error if it is absent)."""


class PostgresBlobStore:
    """Blobs in the `document_blobs` table (bytea, TOASTed out of line by PostgreSQL)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, conn: asyncpg.Connection, key: str, data: bytes) -> None:
        await conn.execute(
            "INSERT INTO document_blobs (key, data) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET data = excluded.data",
            key, data,
        )  # fmt: skip

    async def get(self, key: str) -> bytes | None:
        data: bytes | None = await self.pool.fetchval(
            "SELECT data FROM document_blobs WHERE key = $1", key
        )
        return data

    async def delete(self, conn: asyncpg.Connection, key: str) -> None:
        await conn.execute("DELETE FROM document_blobs WHERE key = $1", key)


def blob_store(pool: asyncpg.Pool) -> BlobStore:
    """The process's blob store. The one place to choose another (e.g. S3) by a setting."""
    return PostgresBlobStore(pool)

"""Where uploaded bytes live: reachable by the API that receives them and the worker that reads
them. Messages carry ids only, never the bytes.

`BlobStore` is the interface; `PostgresBlobStore` the default (one more table, no new service,
and a blob commits or rolls back with the row that names it). Object storage fits the same
interface: its `put` uploads before the caller's transaction commits (a rollback then leaves an
orphan object for a sweep to remove, never a row without its bytes), and its `delete` runs
after that transaction commits.

`put` takes the bytes as chunks, read as they are stored, so that a large upload is never
whole in the API's memory (an object store would send them as a multipart upload).
"""

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

import asyncpg


class BlobStore(Protocol):
    async def put(self, conn: asyncpg.Connection, key: str, chunks: AsyncIterable[bytes]) -> None:
        """Store the bytes `chunks` yields, in order, under `key`, inside the caller's
        transaction when the store can."""

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None if there are none."""

    async def delete(self, conn: asyncpg.Connection, key: str) -> None:
        """Forget `key` (no error if it is absent)."""


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """`data` as the chunks `put` takes."""
    yield data


class PostgresBlobStore:
    """Blobs in the `document_blobs` table (bytea, TOASTed out of line by PostgreSQL)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, conn: asyncpg.Connection, key: str, chunks: AsyncIterable[bytes]) -> None:
        """Store the chunks under `key` in the caller's transaction, replacing what was there.

        Several chunks go through a large object, so a big upload is never one bytea in memory.
        """
        parts = aiter(chunks)
        first = await anext(parts, b"")
        second: bytes | None = await anext(parts, None)
        if second is None:  # one chunk (most documents): one statement
            await conn.execute(_UPSERT.format(data="$2"), key, first)
            return
        # Several: each is appended to a large object, and the server copies the whole into
        # the row. A bytea parameter would need the whole blob in one message, so in our
        # memory two or three times over (our bytes, asyncpg's buffer, the socket's).
        # COPY would stream too, but PostgreSQL refuses COPY FROM under row security.
        oid = await conn.fetchval("SELECT lo_from_bytea(0, $1)", first)
        offset = len(first)
        chunk: bytes | None = second
        while chunk is not None:
            await conn.execute("SELECT lo_put($1, $2, $3)", oid, offset, chunk)
            offset += len(chunk)
            chunk = await anext(parts, None)
        await conn.execute(_UPSERT.format(data="lo_get($2)"), key, oid)
        await conn.execute("SELECT lo_unlink($1)", oid)  # a rollback would also drop it

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None if there are none; read outside any transaction."""
        data: bytes | None = await self.pool.fetchval(
            "SELECT data FROM document_blobs WHERE key = $1", key
        )
        return data

    async def delete(self, conn: asyncpg.Connection, key: str) -> None:
        """Delete `key`'s bytes with the caller's transaction (no error if there are none)."""
        await conn.execute("DELETE FROM document_blobs WHERE key = $1", key)


_UPSERT = (
    "INSERT INTO document_blobs (key, data) SELECT $1, {data}"
    " ON CONFLICT (key) DO UPDATE SET data = excluded.data"
)


def blob_store(pool: asyncpg.Pool) -> BlobStore:
    """The process's blob store. The one place to choose another (e.g. S3) by a setting."""
    return PostgresBlobStore(pool)

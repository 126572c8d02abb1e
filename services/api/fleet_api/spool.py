"""An upload's bytes from when they arrive until they are stored: in memory up to
SPOOL_MEMORY_BYTES, past that in an anonymous temporary file (in TMPDIR, gone when closed).
So a 50 MiB document is never whole in the API's memory; what reaches the database is read
back a chunk at a time (taskfleet.data.blobs)."""

import asyncio
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

SPOOL_MEMORY_BYTES = 1024 * 1024
READ_CHUNK = 1024 * 1024
T = TypeVar("T")


class Spool:
    def __init__(self, memory_bytes: int = SPOOL_MEMORY_BYTES) -> None:
        self._memory_bytes = memory_bytes
        self._file = tempfile.SpooledTemporaryFile(max_size=memory_bytes)  # noqa: SIM115
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        """Append a chunk; past the memory bound it goes to the file, off the event loop."""
        self.size += len(chunk)
        await self._io(self._file.write, chunk)

    async def chunks(self, size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """Everything written, from the start, in chunks of `size` bytes."""
        await self._io(self._file.seek, 0)
        while chunk := await self._io(self._file.read, size):
            yield chunk

    def close(self) -> None:
        """Free the memory, or delete the temporary file; the bytes are gone after this."""
        self._file.close()

    async def _io(self, call: Callable[..., T], *args: object) -> T:
        if self.size <= self._memory_bytes:  # in memory: nothing that could block
            return call(*args)
        # On disk (the write that rolls over to it included): a disk that stalls must not
        # stall every other request of the event loop.
        return await asyncio.to_thread(call, *args)

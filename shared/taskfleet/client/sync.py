"""`TaskfleetSync`: the client for scripts that are not async. Each call runs the async
client's on an event loop of its own (`asyncio.Runner`), so it must not be used from inside a
running loop (use `Taskfleet` there)."""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from taskfleet.client.api import Taskfleet
from taskfleet.client.models import (
    ChatStreamAccepted,
    DocumentAccepted,
    Event,
    FrameAccepted,
    Task,
)
from taskfleet.client.schedules import SyncSchedules

T = TypeVar("T")


class TaskfleetSync:
    """`with TaskfleetSync(base_url, token) as tf: tf.wait(tf.submit_chat("c1", "hi").task_id)`"""

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = Taskfleet(base_url, token, **options)

    def __enter__(self) -> "TaskfleetSync":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and the loop."""
        self._runner.run(self._client.close())
        self._runner.close()

    def submit_chat(self, chat_id: str, content: str, **options: Any) -> ChatStreamAccepted:
        """As `Taskfleet.submit_chat`."""
        return self._runner.run(self._client.submit_chat(chat_id, content, **options))

    def upload_document(self, file: bytes | Path, **options: Any) -> DocumentAccepted:
        """As `Taskfleet.upload_document`."""
        return self._runner.run(self._client.upload_document(file, **options))

    def submit_frame(self, camera_id: str, image: bytes, **options: Any) -> FrameAccepted:
        """As `Taskfleet.submit_frame`."""
        return self._runner.run(self._client.submit_frame(camera_id, image, **options))

    @property
    def schedules(self) -> SyncSchedules:
        """As `Taskfleet.schedules`."""
        return SyncSchedules(self._client.schedules, self._runner.run)

    def get(self, task_id: UUID | str) -> Task:
        """As `Taskfleet.get`."""
        return self._runner.run(self._client.get(task_id))

    def wait(self, task_id: UUID | str, timeout_s: float | None = None) -> Task:
        """As `Taskfleet.wait`."""
        return self._runner.run(self._client.wait(task_id, timeout_s))

    def cancel(self, task_id: UUID | str) -> Task:
        """As `Taskfleet.cancel`."""
        return self._runner.run(self._client.cancel(task_id))

    def retry(self, task_id: UUID | str) -> Task:
        """As `Taskfleet.retry`."""
        return self._runner.run(self._client.retry(task_id))

    def list(self, **filters: Any) -> Iterator[Task]:
        """As `Taskfleet.list`: the pages are read as the iteration goes."""
        return self._iterate(self._client.list(**filters))

    def events(self, **options: Any) -> Iterator[Event]:
        """As `Taskfleet.events` (it never ends by itself: break out of it)."""
        return self._iterate(self._client.events(**options))

    def _iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._runner.run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            if isinstance(stream, AsyncGenerator):
                self._runner.run(stream.aclose())


async def _next(stream: AsyncIterator[T]) -> T:
    """One step of the stream, as the coroutine that Runner.run takes."""
    return await anext(stream)

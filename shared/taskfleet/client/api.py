"""`Taskfleet`: the typed async client of the API (docs/integrating.md).

Every submission carries an `Idempotency-Key` (the caller's, else one made here), so a
request sent again, after a 429, a 503 or a connection lost before the answer, gives the task
the first one made, never a second. 429 and 503 are retried honouring Retry-After; reads are
retried too; cancel, retry, resume, restart and delete only on 429 and 503 (the server did
nothing)."""

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp

from taskfleet.client import events, models
from taskfleet.client.models import (
    Batch,
    BatchAccepted,
    ChatStreamAccepted,
    DocumentAccepted,
    Event,
    FrameAccepted,
    PriorityName,
    Task,
    TaskPage,
)
from taskfleet.client.params import callback, key, owner, query, when
from taskfleet.client.schedules import Schedules
from taskfleet.client.transport import Transport

LONG_POLL_MAX_S = 60.0


class Taskfleet(Transport):
    """`async with Taskfleet(base_url, token) as tf:` (or `await tf.close()` at the end)."""

    # -- submissions: each keyed, so sending one again never makes two tasks --------------

    async def submit_chat(
        self,
        chat_id: str,
        content: str,
        *,
        user_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | str | None = None,
        delay_s: float | None = None,
        priority: PriorityName | None = None,
        callback_url: str | None = None,
    ) -> ChatStreamAccepted:
        """Post a chat message: 202 at once, the reply comes from a worker (`wait`, `events`);
        `run_at` or `delay_s` delay it (docs/scheduling.md); `priority` is its level
        (docs/priorities.md); `callback_url` gets its end, signed with the answer's
        `callback_secret` (docs/integrating.md#a-callback-per-task)."""
        body: dict[str, Any] = {"chat_id": chat_id, "content": content}
        body |= when(run_at, delay_s, priority) | callback(callback_url)
        if user_id is not None:
            body["user_id"] = user_id
        if metadata:
            body["metadata"] = dict(metadata)
        return await self._call(
            ChatStreamAccepted, "POST", "/api/chat/stream", key=key(idempotency_key),
            body=lambda: {"json": body},
        )  # fmt: skip

    async def upload_document(
        self,
        file: bytes | Path,
        *,
        filename: str = "document",
        title: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | str | None = None,
        delay_s: float | None = None,
        priority: PriorityName | None = None,
        callback_url: str | None = None,
    ) -> DocumentAccepted:
        """Upload a PDF, text or Markdown document to be indexed (a Path is read whole)."""
        data = await asyncio.to_thread(file.read_bytes) if isinstance(file, Path) else file
        name = file.name if isinstance(file, Path) else filename

        def form() -> dict[str, Any]:  # a FormData is spent once sent: one per attempt
            fields = aiohttp.FormData()
            if title is not None:
                fields.add_field("title", title)
            if metadata:
                fields.add_field("metadata", json.dumps(dict(metadata)))
            fields.add_field("file", data, filename=name, content_type=content_type)
            return {"data": fields}

        return await self._call(
            DocumentAccepted, "POST", "/api/documents", key=key(idempotency_key), body=form,
            params=owner(user_id) | query(when(run_at, delay_s, priority) | callback(callback_url)),
        )  # fmt: skip

    async def submit_frame(
        self,
        camera_id: str,
        image: bytes,
        *,
        content_type: str = "image/jpeg",
        metadata: Mapping[str, str] | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
        run_at: datetime | str | None = None,
        delay_s: float | None = None,
        priority: PriorityName | None = None,
        callback_url: str | None = None,
    ) -> FrameAccepted:
        """Send a camera frame (JPEG or PNG) to be analysed."""
        params = owner(user_id) | {f"metadata.{k}": v for k, v in (metadata or {}).items()}
        params |= query(when(run_at, delay_s, priority) | callback(callback_url))
        return await self._call(
            FrameAccepted, "POST", f"/api/cameras/{camera_id}/frames", key=key(idempotency_key),
            body=lambda: {"data": image, "headers": {"Content-Type": content_type}},
            params=params,
        )  # fmt: skip

    async def submit_batch(
        self,
        messages: Sequence[tuple[str, str]],
        *,
        user_id: str | None = None,
        run_at: datetime | str | None = None,
        delay_s: float | None = None,
        priority: PriorityName | None = None,
        then: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> BatchAccepted:
        """Many chat messages, `(chat_id, content)` each, as one batch: all stored or none;
        `then`, a `(chat_id, content)` run once they all ended, with their outcomes;
        `callback_url` gets the batch's `batch.completed`."""
        body: dict[str, Any] = {
            "tasks": [{"chat_id": chat, "content": text} for chat, text in messages],
            **when(run_at, delay_s, priority), **owner(user_id), **callback(callback_url),
            **({"then": {"chat_id": then[0], "content": then[1]}} if then else {}),
        }  # fmt: skip
        return await self._call(BatchAccepted, "POST", "/api/batches", key=key(idempotency_key),
                                body=lambda: {"json": body})  # fmt: skip

    async def batch(self, batch_id: UUID | str) -> Batch:
        """The batch: its members' counts per status and its progress."""
        return await self._call(Batch, "GET", f"/api/batches/{batch_id}", safe=True)

    async def cancel_batch(self, batch_id: UUID | str) -> Batch:
        """Cancel every unfinished member of the batch."""
        return await self._call(Batch, "POST", f"/api/batches/{batch_id}/cancel")

    @property
    def schedules(self) -> Schedules:
        """Recurring tasks: `create`, `list`, `get`, `update`, `pause`, `resume`, `delete`."""
        return Schedules(self._call)

    # -- tasks ------------------------------------------------------------------------------

    async def get(self, task_id: UUID | str) -> Task:
        """The task as it is now."""
        return await self._call(Task, "GET", f"/api/tasks/{task_id}", safe=True)

    async def wait(self, task_id: UUID | str, timeout_s: float | None = None) -> Task:
        """The task once it ended (completed, failed or cancelled), by the server's long poll;
        after `timeout_s` (None: no limit), the task as it is then: look at `terminal`."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            left = LONG_POLL_MAX_S if deadline is None else deadline - loop.time()
            wait_s = max(0.0, min(LONG_POLL_MAX_S, left))
            task = await self._call(
                Task, "GET", f"/api/tasks/{task_id}", safe=True, params={"wait": f"{wait_s:g}"},
                timeout_s=wait_s + self.timeout_s,
            )  # fmt: skip
            if task.terminal or (deadline is not None and loop.time() >= deadline):
                return task

    async def cancel(self, task_id: UUID | str) -> Task:
        """Cancel it: at once if it waits, within about a second if it runs (409 if over)."""
        return await self._call(Task, "POST", f"/api/tasks/{task_id}/cancel")

    async def retry(self, task_id: UUID | str) -> Task:
        """Run a failed or cancelled task again (409 otherwise)."""
        return await self._call(Task, "POST", f"/api/tasks/{task_id}/retry")

    async def resume(self, task_id: UUID | str) -> Task:
        """Run a failed or cancelled task again from its checkpoint (409 without one)."""
        return await self._call(Task, "POST", f"/api/tasks/{task_id}/resume")

    async def restart(self, task_id: UUID | str) -> Task:
        """Run a failed or cancelled task again from scratch (its checkpoint cleared)."""
        return await self._call(Task, "POST", f"/api/tasks/{task_id}/restart")

    async def delete(self, task_id: UUID | str) -> models.TaskDeleted:
        """Delete a finished task (409 while it or a child of it runs)."""
        return await self._call(models.TaskDeleted, "DELETE", f"/api/tasks/{task_id}")

    async def list(
        self,
        *,
        status: str | list[str] | None = None,
        type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        user_id: str | None = None,
        page_size: int = 50,
    ) -> AsyncIterator[Task]:
        """Every task that matches, newest first, page after page (`status`: several, or
        `active`; `metadata`: each pair must match)."""
        path = "/api/tasks" if user_id is None else f"/api/tasks/user/{user_id}"
        params: dict[str, str] = {"limit": str(page_size)}
        if status is not None:
            params["status"] = status if isinstance(status, str) else ",".join(status)
        if type is not None:
            params["type"] = type
        params |= {f"metadata.{k}": v for k, v in (metadata or {}).items()}
        while True:
            page = await self._call(TaskPage, "GET", path, safe=True, params=params)
            for task in page.tasks:
                yield task
            if page.next_cursor is None:
                return
            params["cursor"] = page.next_cursor

    def events(
        self, *, since: Mapping[str, int] | None = None, user_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Every event of the caller's tasks (a service token: every user's, or `user_id`'s),
        once each and in `seq` order per task, across reconnects; first the unfinished tasks
        as `task.updated` with the whole task. `since`: task id -> the last seq already seen."""
        url = self.base_url.replace("http", "ws", 1) + "/ws/tasks"

        def connect(since_values: list[str]) -> Any:
            params = [("since", s) for s in since_values]
            if user_id is not None:
                params.append(("user_id", user_id))
            return self.session.ws_connect(url, params=params, heartbeat=30.0)

        return events.stream(connect, events.Resume(dict(since or {})))

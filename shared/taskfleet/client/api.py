"""`Taskfleet`: the typed async client of the API (docs/integrating.md).

Every submission carries an `Idempotency-Key` (the caller's, else one made here), so a
request sent again, after a 429, a 503 or a connection lost before the answer, gives the task
the first one made, never a second. 429 and 503 are retried honouring Retry-After; reads are
retried too; cancel and retry only on 429 and 503, where the server did nothing."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import aiohttp
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from taskfleet.client import events
from taskfleet.client.errors import error_of, retry_after_or
from taskfleet.client.models import (
    Batch,
    BatchAccepted,
    ChatStreamAccepted,
    DocumentAccepted,
    Event,
    FrameAccepted,
    Task,
    TaskPage,
)
from taskfleet.client.params import key, owner, query, resend, when
from taskfleet.client.schedules import Schedules

M = TypeVar("M", bound=BaseModel)
LONG_POLL_MAX_S = 60.0


class Taskfleet:
    """`async with Taskfleet(base_url, token) as tf:` (or `await tf.close()` at the end)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        attempts: int = 5,
        timeout_s: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> "Taskfleet":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session this client made (one it was given stays open)."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session, with the bearer token on every request."""
        if self._session is None:  # made in the running loop, at first use
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

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
    ) -> ChatStreamAccepted:
        """Post a chat message: 202 at once, the reply comes from a worker (`wait`, `events`);
        `run_at` or `delay_s` delay it (docs/scheduling.md)."""
        body: dict[str, Any] = {"chat_id": chat_id, "content": content, **when(run_at, delay_s)}
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
            params=owner(user_id) | query(when(run_at, delay_s)),
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
    ) -> FrameAccepted:
        """Send a camera frame (JPEG or PNG) to be analysed."""
        params = owner(user_id) | {f"metadata.{k}": v for k, v in (metadata or {}).items()}
        params |= query(when(run_at, delay_s))
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
    ) -> BatchAccepted:
        """Many chat messages, `(chat_id, content)` each, as one batch: all stored or none.
        The API takes no Idempotency-Key for batches yet: sent again only when nothing can
        have been stored (429, 503 but `outcome_unknown`)."""
        body: dict[str, Any] = {
            "tasks": [{"chat_id": chat, "content": text} for chat, text in messages],
            **when(run_at, delay_s), **owner(user_id),
        }  # fmt: skip
        return await self._call(BatchAccepted, "POST", "/api/batches", body=lambda: {"json": body})

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

    # -- the one request path ---------------------------------------------------------------

    async def _call(
        self,
        model: type[M],
        method: str,
        path: str,
        *,
        key: str | None = None,
        safe: bool = False,
        body: Callable[[], dict[str, Any]] | None = None,
        params: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> M:
        """One request, sent again on 429/503 (and, when `safe` or keyed, a broken link)."""
        headers = {"Idempotency-Key": key} if key is not None else {}
        resend_on_link = safe or key is not None
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: resend(e, safe=resend_on_link)),
            wait=retry_after_or(wait_exponential_jitter(multiplier=0.2, max=10)),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                extra = body() if body is not None else {}
                extra_headers = headers | extra.pop("headers", {})
                async with self.session.request(
                    method, self.base_url + path, params=params, headers=extra_headers,
                    timeout=timeout, **extra,
                ) as resp:  # fmt: skip
                    raw = await resp.read()
                    if resp.status >= 400:
                        raise error_of(resp.status, raw, resp.headers.get("Retry-After"))
                    return model.model_validate_json(raw)
        raise AssertionError("unreachable: tenacity reraises the last error")

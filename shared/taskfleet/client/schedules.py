"""`Taskfleet.schedules`: recurring tasks through the API (docs/scheduling.md#schedules)."""

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, Self, TypeVar
from uuid import UUID

from pydantic import BaseModel

from taskfleet.client.params import key
from taskfleet.client.schedule_models import Missed, Schedule, ScheduleList

M = TypeVar("M", bound=BaseModel)
Runnable = Coroutine[Any, Any, Any]


class Call(Protocol):
    """The client's one request path (`Taskfleet._call`)."""

    def __call__(
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
    ) -> Awaitable[M]:
        """One request, sent again on 429/503 (and, when `safe` or keyed, a broken link)."""
        ...


class Schedules:
    """`await tf.schedules.create("c1", "summary", cron="0 9 * * *", timezone="Europe/Paris")`"""

    def __init__(self, call: Call) -> None:
        self._call = call

    async def create(
        self,
        chat_id: str,
        content: str,
        *,
        cron: str | None = None,
        interval_s: int | None = None,
        timezone: str | None = None,
        missed: Missed | None = None,
        enabled: bool = True,
        metadata: Mapping[str, str] | None = None,
        user_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Schedule:
        """A schedule that posts `content` to `chat_id` at every tick of `cron` (in
        `timezone`) or every `interval_s` seconds; keyed, so sending it again never makes two."""
        task: dict[str, Any] = {"chat_id": chat_id, "content": content}
        if metadata:
            task["metadata"] = dict(metadata)
        body: dict[str, Any] = {"task": task, "enabled": enabled}
        fields = {"cron": cron, "interval_s": interval_s, "timezone": timezone, "missed": missed,
                  "user_id": user_id}  # fmt: skip
        body |= {k: v for k, v in fields.items() if v is not None}
        return await self._call(
            Schedule, "POST", "/api/schedules", key=key(idempotency_key),
            body=lambda: {"json": body},
        )  # fmt: skip

    async def list(self, *, user_id: str | None = None, limit: int = 100) -> list[Schedule]:
        """The caller's schedules, newest first (an admin's: everyone's, or `user_id`'s)."""
        params = {"limit": str(limit)} | ({"user_id": user_id} if user_id else {})
        page = await self._call(ScheduleList, "GET", "/api/schedules", safe=True, params=params)
        return page.schedules

    async def get(self, schedule_id: UUID | str) -> Schedule:
        """The schedule, with its next and last runs."""
        return await self._call(Schedule, "GET", f"/api/schedules/{schedule_id}", safe=True)

    async def update(self, schedule_id: UUID | str, **changes: Any) -> Schedule:
        """Change the fields named (`cron`, `interval_s`, `timezone`, `task`, `missed`,
        `enabled`); the others stay."""
        return await self._call(
            Schedule, "PATCH", f"/api/schedules/{schedule_id}", safe=True,
            body=lambda: {"json": changes},
        )  # fmt: skip

    async def pause(self, schedule_id: UUID | str) -> Schedule:
        """No run until resumed."""
        return await self.update(schedule_id, enabled=False)

    async def resume(self, schedule_id: UUID | str) -> Schedule:
        """Runs again from the first tick after now (missed ticks are not made up)."""
        return await self.update(schedule_id, enabled=True)

    async def delete(self, schedule_id: UUID | str) -> None:
        """Delete it: no more runs (the runs it made stay)."""
        await self._call(_Nothing, "DELETE", f"/api/schedules/{schedule_id}")


class _Nothing(BaseModel):
    """The empty answer of a 204."""

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **_: Any) -> Self:
        """Any body, even none."""
        return cls()


class SyncSchedules:
    """`TaskfleetSync.schedules`: the same calls, each run on the sync client's loop."""

    def __init__(
        self, schedules: Schedules, run: Callable[[Coroutine[Any, Any, Any]], Any]
    ) -> None:
        self._schedules = schedules
        self._run = run

    def create(self, chat_id: str, content: str, **options: Any) -> Schedule:
        """As `Schedules.create`."""
        schedule: Schedule = self._run(self._schedules.create(chat_id, content, **options))
        return schedule

    def list(self, **options: Any) -> list[Schedule]:
        """As `Schedules.list`."""
        found: list[Schedule] = self._run(self._schedules.list(**options))
        return found

    def get(self, schedule_id: UUID | str) -> Schedule:
        """As `Schedules.get`."""
        schedule: Schedule = self._run(self._schedules.get(schedule_id))
        return schedule

    def update(self, schedule_id: UUID | str, **changes: Any) -> Schedule:
        """As `Schedules.update` (`pause` and `resume` are `enabled=False` and `True`)."""
        schedule: Schedule = self._run(self._schedules.update(schedule_id, **changes))
        return schedule

    def delete(self, schedule_id: UUID | str) -> None:
        """As `Schedules.delete`."""
        self._run(self._schedules.delete(schedule_id))

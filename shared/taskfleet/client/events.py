"""`Taskfleet.events`: the WebSocket `/ws/tasks` as one stream of events that survives
reconnects. What it has seen of each task (the last `seq`) goes with every reconnect as
`?since=<task_id>:<seq>`, so the server sends what was missed (docs/live-updates.md); what
arrives twice across a reconnect is dropped here by its `seq`. So each event is yielded once,
and a task's events in `seq` order."""

import asyncio
import json
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from taskfleet.client.errors import TaskfleetError
from taskfleet.client.models import Event

# The tasks resumed by `since` on a reconnect: the most recently active unfinished ones
# (a request line holds about a thousand; the API allows 64 KiB).
FOLLOWED_MAX = 500
SEEN_MAX = 10_000
RECONNECT_BASE_S = 0.2
RECONNECT_MAX_S = 10.0
# A handshake refused for these is the caller's to fix, not a reason to try again.
FINAL_STATUSES = frozenset({400, 401, 403, 404, 422})
# message.snapshot comes right after the task.updated of the same seq (a resume from the
# database): it sorts after it.
_RANK = {"message.snapshot": 1}


class Resume:
    """What has been yielded: the last (seq, rank) per task, and the unfinished tasks to
    resume with `since` after a reconnect."""

    def __init__(self, since: dict[str, int] | None = None) -> None:
        self.seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.followed: OrderedDict[str, int] = OrderedDict()
        for task_id, seq in (since or {}).items():
            self._mark(task_id, (seq, max(_RANK.values())), follow=True)

    def since(self) -> list[str]:
        """The `since` values of the next connection."""
        return [f"{task_id}:{seq}" for task_id, seq in self.followed.items()]

    def accept(self, message: dict[str, Any]) -> list[Event]:
        """The events of one server message that were not yielded before."""
        if message.get("type") == "snapshot":
            # A followed task is resumed by its `since`, after the snapshot: only the others.
            events = [
                Event(type="task.updated", task_id=t["id"], seq=t["seq"], task=t)
                for t in message.get("tasks", [])
                if str(t["id"]) not in self.followed
            ]
        else:
            events = [Event.model_validate(message)]
        return [e for e in events if self._fresh(e)]

    def _fresh(self, event: Event) -> bool:
        task_id, key = str(event.task_id), (event.seq, _RANK.get(event.type, 0))
        if key <= self.seen.get(task_id, (-1, 0)):
            return False
        # Only a task.updated says whether the task goes on; what follows its end (the
        # reply's snapshot) does not make it one to resume again.
        if event.type == "task.updated":
            follow = not event.terminal
        else:
            follow = task_id in self.followed or task_id not in self.seen
        self._mark(task_id, key, follow=follow)
        return True

    def _mark(self, task_id: str, key: tuple[int, int], *, follow: bool) -> None:
        self.seen[task_id] = key
        self.seen.move_to_end(task_id)
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        self.followed.pop(task_id, None)
        if follow:  # an ended task has nothing more to resume (a retry starts it anew)
            self.followed[task_id] = key[0]
            if len(self.followed) > FOLLOWED_MAX:
                self.followed.popitem(last=False)


async def stream(connect: Callable[[list[str]], Any], resume: Resume) -> AsyncIterator[Event]:
    """Events from `connect(since)` (an aiohttp ws_connect), reconnecting with backoff
    whenever the socket ends (the API restarted: 1001; too slow: 4008; the network)."""
    failures = 0
    while True:
        try:
            async with connect(resume.since()) as ws:
                failures = 0
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        for event in resume.accept(json.loads(message.data)):
                            yield event
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in FINAL_STATUSES:
                raise TaskfleetError(exc.status, "handshake_refused", exc.message) from None
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            pass  # the API is away or restarting: try again
        failures += 1
        await asyncio.sleep(_backoff(failures))


def _backoff(failures: int) -> float:
    """Exponential with full jitter, so that many clients do not come back at once."""
    return random.uniform(0, min(RECONNECT_MAX_S, RECONNECT_BASE_S * 2**failures))

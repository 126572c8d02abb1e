"""`GET /ws/tasks`: a snapshot of the caller's unfinished tasks, then their live events.

`?since=<task_id>:<seq>` (repeatable) resumes a task after the last event the client saw:
from this replica's replay buffer when it holds them all, else from a fresh read of the
database (`task.updated` with the whole task and `message.snapshot` with the reply so far).
Events are sent in seq order per task, each once; a client too slow to keep up is closed
(4008) without slowing anyone else. When the API stops, every socket is closed with 1001
(going away) at once, rather than holding the stop until its client leaves.
"""

import asyncio
import contextlib
import re
from collections import OrderedDict
from functools import partial
from typing import Any
from uuid import UUID

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from fleet_api.auth import WS_PROTOCOL, principal
from fleet_api.errors import ApiError
from fleet_api.hub import Event, EventHub, Subscription
from fleet_api.routes import KERNEL
from taskfleet.core import jsonx
from taskfleet.core.messages import ID_PATTERN
from taskfleet.core.metrics import WEBSOCKETS_OPEN
from taskfleet.data import operations
from taskfleet.runtime.kernel import Kernel
from taskfleet.security.crypto import Keyring
from taskfleet.store.tenancy import Db, audited, for_user

log = structlog.get_logger("fleet_api.ws")

HEARTBEAT_S = 20.0
SEND_TIMEOUT_S = 10.0
# How long a close waits for the client's close frame (then the connection is dropped).
CLOSE_TIMEOUT_S = 5.0
CLOSE_TOO_SLOW = 4008
SENT_REMEMBERED = 10_000
GOING_AWAY = b"server going away: reconnect with since"


class OpenSockets:
    """The replica's open sockets, so that a stop closes them instead of waiting for them
    (aiohttp waits for every handler, and a socket's handler runs until its client leaves)."""

    def __init__(self) -> None:
        self._open: set[web.WebSocketResponse] = set()
        self.closing = False

    def add(self, ws: web.WebSocketResponse) -> None:
        """Track a socket that was opened, so that a stop closes it."""
        if ws not in self._open:
            self._open.add(ws)
            WEBSOCKETS_OPEN.inc()

    def discard(self, ws: web.WebSocketResponse) -> None:
        """Stop tracking a socket that ended (one never tracked is fine)."""
        if ws in self._open:
            self._open.discard(ws)
            WEBSOCKETS_OPEN.dec()

    async def close_all(self) -> None:
        """1001 to every client, all at once; each close waits CLOSE_TIMEOUT_S at most."""
        self.closing = True
        closes = [going_away(ws) for ws in list(self._open)]
        log.info("websockets_closing", count=len(closes))
        await asyncio.gather(*closes, return_exceptions=True)


async def going_away(ws: web.WebSocketResponse) -> None:
    """Close with 1001: the client should reconnect, to any replica, with `since`."""
    await ws.close(code=WSCloseCode.GOING_AWAY, message=GOING_AWAY)


async def close_sockets(app: web.Application) -> None:
    """The app's on_shutdown hook: it runs once the API stopped accepting connections."""
    await app[SOCKETS].close_all()


HUB = web.AppKey("hub", EventHub)
SOCKETS = web.AppKey("sockets", OpenSockets)


def parse_since(values: list[str]) -> list[tuple[UUID, int]]:
    """The `since` values as (task id, seq) pairs; 400 for one not `<task_id>:<seq>`."""
    since = []
    for value in values:
        task, _, seq = value.partition(":")
        try:
            since.append((UUID(task), int(seq)))
        except ValueError:
            raise ApiError(
                400, "bad_since", f"since must be <task_id>:<seq>, not {value!r}"
            ) from None
    return since


class Feed:
    """What one socket has been sent: the highest seq per task, so nothing goes twice.

    Events carry sealed values as the database holds them; the socket, like every API
    answer, shows them opened to the owner. The seqs of the last SENT_REMEMBERED tasks are
    kept: an all-users socket open for days would otherwise hold one per task of the fleet."""

    def __init__(self, ws: web.WebSocketResponse, keyring: Keyring) -> None:
        self.ws = ws
        self.keyring = keyring
        self.sent: OrderedDict[str, int] = OrderedDict()

    def mark(self, task_id: str, seq: int) -> None:
        """Record `seq` as the task's last sent; past SENT_REMEMBERED the least recent goes."""
        self.sent[task_id] = seq
        self.sent.move_to_end(task_id)
        if len(self.sent) > SENT_REMEMBERED:
            self.sent.popitem(last=False)

    async def send(self, event: Event) -> None:
        """Send an event, opened for its owner, unless this socket had it or a later one of
        its task already."""
        task_id, seq = str(event.get("task_id")), int(event.get("seq", 0))
        if seq <= self.sent.get(task_id, -1):
            return
        self.mark(task_id, seq)
        await self._send(_client_view(event, self.keyring))

    async def send_raw(self, message: dict[str, Any]) -> None:
        """Send a message as it is: no seq check, nothing opened (it must be already)."""
        await self._send(jsonx.dumps(message))

    async def _send(self, text: bytes) -> None:
        # orjson's UTF-8 as the text frame itself (send_str would decode and encode it again),
        # and a timeout in this task (wait_for would start another task for every event).
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await self.ws.send_frame(text, WSMsgType.TEXT)


def _client_view(event: Event, keyring: Keyring) -> bytes:
    view = {k: v for k, v in event.items() if k != "user_id"}
    if isinstance(view.get("task"), dict) and "id" in view["task"]:
        view["task"] = operations.reveal_task(view["task"], keyring)
    return jsonx.dumps(view)


async def ws_tasks(request: web.Request) -> web.WebSocketResponse:
    """Handle one socket: a snapshot, then resumed and live events, until the client leaves
    or the API stops. A user token follows its own tasks; a service or admin token every
    user's, or one user's with `?user_id=` (422 if that is no user id)."""
    who = principal(request)
    since = parse_since(request.query.getall("since", []))
    kernel, hub = request.app[KERNEL], request.app[HUB]
    # Users see their own tasks; the chat backend (service) and operators see everyone's.
    user_filter = who.user_id if who.scope == "user" else request.query.get("user_id")
    if user_filter is not None and not re.fullmatch(ID_PATTERN, user_filter):
        raise ApiError(422, "invalid_query", "user_id is not a user id")
    ws = web.WebSocketResponse(
        protocols=(WS_PROTOCOL,),  # a browser that offered its token so must get one back
        heartbeat=HEARTBEAT_S,
        max_msg_size=64 * 1024,
        timeout=CLOSE_TIMEOUT_S,
    )
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    if sockets.closing:  # opened while the stop closed the others
        await going_away(ws)
        return ws
    sockets.add(ws)
    feed = Feed(ws, kernel.keyring)
    writer = f"ws-writer-{id(feed):x}"
    sub: Subscription | None = None
    try:
        sub = await hub.subscribe(user_filter)  # before the snapshot: nothing falls in between
        await _snapshot(kernel, feed, _snapshot_db(kernel, who.user_id, user_filter), user_filter)
        for task_id, seq in since:
            await _resume(
                kernel, hub, feed, who.user_id if who.scope == "user" else None, task_id, seq
            )
        kernel.supervisor.spawn(
            writer, partial(_forward, sub, feed), restart=False, kind="ws-writer"
        )
        await _read_until_closed(ws)
    except (ConnectionResetError, TimeoutError):
        pass  # the client went away or stopped reading: nothing to tell it
    finally:
        # First, before any await: a closing connection may cancel this handler here.
        sockets.discard(ws)
        if sub is not None:
            hub.unsubscribe(sub)
        await kernel.supervisor.stop(writer)
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


def _snapshot_db(kernel: Kernel, caller: str, user_id: str | None) -> Db:
    if user_id is None:  # every user's tasks: an operator's (or the backend's) audited read
        return audited(kernel.pool, caller, "ws_snapshot_all_users")
    return for_user(kernel.pool, user_id)


async def _snapshot(kernel: Kernel, feed: Feed, db: Db, user_id: str | None) -> None:
    tasks = [
        operations.reveal_task(t, kernel.keyring)
        for t in await operations.unfinished_tasks(db, user_id)
    ]
    for task in tasks:
        feed.mark(str(task["id"]), int(task["seq"]))
    await feed.send_raw({"type": "snapshot", "tasks": tasks})


async def _resume(
    kernel: Kernel, hub: EventHub, feed: Feed, owner: str | None, task_id: UUID, seq: int
) -> None:
    owner = owner or await kernel.store.task_owner(task_id)
    if owner is None:
        return
    task = await operations.task_with_message(for_user(kernel.pool, owner), task_id)
    if task is None:
        return  # not yours: as if absent
    task = operations.reveal_task(task, kernel.keyring)
    feed.mark(str(task_id), seq)
    missed = hub.replay(str(task_id), seq)
    if missed is not None:
        for event in missed:
            await feed.send(event)
        return
    if task["seq"] > seq:
        feed.mark(str(task_id), task["seq"])
        await feed.send_raw(
            {"type": "task.updated", "task_id": str(task_id), "seq": task["seq"], "task": task}
        )
    if "message" in task:
        # Also when the client is within the task's current state (it had some of its reply
        # deltas): the ones it missed are not here, the reply as last saved is.
        message = task["message"]
        snapshot = {"type": "message.snapshot", "task_id": str(task_id),
                    "message_id": message["id"], "seq": max(task["seq"], seq),
                    "content": message["content"], "status": message["status"]}  # fmt: skip
        await feed.send_raw(snapshot)


async def _forward(sub: Subscription, feed: Feed) -> None:
    """The socket's writer (a supervised task): the hub's events, until the socket ends.

    Closing the socket ends the reader in ws_tasks too."""
    try:
        while True:
            event = await sub.queue.get()
            # The queue only overflows while full, so this is seen at the next event at worst.
            if sub.overflowed.is_set():
                await feed.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow: reconnect with since")
                return
            await feed.send(event)
    except (ConnectionResetError, TimeoutError):  # gone, or stopped reading: let it go
        with contextlib.suppress(Exception):
            await feed.ws.close()


async def _read_until_closed(ws: web.WebSocketResponse) -> None:
    """The client only listens; reading keeps heartbeats and the close handshake working."""
    async for message in ws:
        if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
            return

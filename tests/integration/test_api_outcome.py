"""A submission whose commit may or may not have happened says so (503 `outcome_unknown`), and
sending it again with the same idempotency key gives one task, never two; a database that
cannot be reached at all stays a plain 503 `unavailable`."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from fleet_api.app import create_app
from fleet_api.errors import ApiError
from fleet_api.routes import create_in
from taskfleet.core.settings import Settings
from taskfleet.runtime.kernel import Kernel, open_kernel
from tests.conftest import wait_for
from tests.integration.api_client import auth, new_user


@dataclass
class CuttingProxy:
    """A TCP proxy whose links can all be cut at once (both ends closed), as when a network
    path to PostgreSQL breaks; links made after a cut pass normally until `refuse()`."""

    target: tuple[str, int]
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def refuse(self) -> None:
        """No new links from now on (connection refused), and the open ones cut."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()

    async def close(self) -> None:
        await self.refuse()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]
        # The proxy owns its pumps and cancels them in close().
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.get_running_loop().create_task(self._pump(src, dst))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.close()


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[CuttingProxy]:
    url = urlsplit(settings.database_url)
    proxy = CuttingProxy((url.hostname or "127.0.0.1", url.port or 5432))
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def client(
    settings: Settings, proxy: CuttingProxy
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An API whose every database link goes through the proxy."""
    url = urlsplit(settings.database_url)
    through = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))

    async def no_publish(queue: str, body: bytes, message_id: str, headers: dict[str, Any]) -> None:
        """Nothing consumes here."""

    # One connection: the test's warm-up submission prepares the statement on it.
    cut = settings.model_copy(update={"database_url": through, "db_pool_size": 1})
    async with (
        open_kernel(cut, name="cut", relay=False) as kernel,
        TestClient(TestServer(create_app(kernel, publish=no_publish))) as c,
    ):
        yield c


async def _submit_waiting_on(db: asyncpg.Connection) -> bool:
    """Whether the chat submission waits for the lock on `messages` the test holds (from
    its Bind on: pg_stat_activity may not show its text yet, pg_locks does)."""
    waiting = await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE relation = 'messages'::regclass AND NOT granted"
    )
    return bool(waiting)


async def test_a_link_cut_during_the_submission_is_outcome_unknown_and_a_retry_gives_one_task(
    kernel: Kernel,
    client: TestClient[web.Request, web.Application],
    proxy: CuttingProxy,
    settings: Settings,
) -> None:
    user, key = new_user("cut"), f"key-{uuid4().hex}"
    body = {"chat_id": "c", "content": "are you there?", "idempotency_key": key}
    # Once first, so that the statement is prepared (its types read) before the lock.
    warm = await client.post(
        "/api/chat/stream", json=body | {"idempotency_key": "warm"}, headers=auth(user)
    )
    assert warm.status == 202
    warm_id = (await warm.json())["task_id"]

    async def forgotten() -> bool:  # the warm-up's outbox row: it too would wait for the lock
        return not await kernel.pool.fetchval("SELECT 1 FROM outbox WHERE task_id = $1", warm_id)

    await wait_for(forgotten, what="the warm-up's outbox row to go")
    blocker = await asyncpg.connect(settings.database_url)
    try:
        # The submission's statement gets as far as its messages row, and waits there.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE messages IN SHARE MODE")
        post = asyncio.ensure_future(client.post("/api/chat/stream", json=body, headers=auth(user)))
        await wait_for(lambda: _submit_waiting_on(blocker), what="the submission to wait")
        proxy.cut()  # the API's link breaks with the statement in flight
        resp = await post
        answer = await resp.json()
        assert resp.status == 503, answer
        assert answer["error"]["code"] == "outcome_unknown"
        assert "same Idempotency-Key" in answer["error"]["message"]
        assert resp.headers["Retry-After"]
        await transaction.rollback()  # the orphaned statement goes on: it may commit now
    finally:
        await blocker.close()

    again = await client.post("/api/chat/stream", json=body, headers=auth(user))
    accepted = await again.json()
    assert again.status == 202, accepted
    rows = await kernel.pool.fetch(
        "SELECT id FROM tasks WHERE user_id = $1 AND idempotency_key = $2", user, key
    )
    assert [str(r["id"]) for r in rows] == [accepted["task_id"]]


async def test_a_database_that_cannot_be_reached_is_plain_unavailable(
    client: TestClient[web.Request, web.Application], proxy: CuttingProxy
) -> None:
    await proxy.refuse()  # nothing was sent: the outcome is known, nothing was created
    resp = await client.post(
        "/api/chat/stream", json={"chat_id": "c", "content": "hi"}, headers=auth(new_user("away"))
    )
    answer = await resp.json()
    assert resp.status == 503, answer
    assert answer["error"]["code"] == "unavailable"


class _BreakingDb:
    """A Db whose one transaction breaks its link in the body or in the commit."""

    def __init__(self, at: str) -> None:
        self.at = at

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        if self.at == "write":
            raise asyncpg.ConnectionDoesNotExistError("closed in the middle of operation")
        yield None
        raise asyncpg.ConnectionDoesNotExistError("closed in the middle of the commit")


@pytest.mark.parametrize(("at", "code"), [("write", None), ("commit", "outcome_unknown")])
async def test_only_a_link_lost_in_the_commit_makes_an_upload_outcome_unknown(
    at: str, code: str | None
) -> None:
    async def write(conn: Any) -> None:
        pass

    if code is None:  # lost while writing: rolled back for sure, a plain 503 (the middleware's)
        with pytest.raises(asyncpg.ConnectionDoesNotExistError):
            await create_in(_BreakingDb(at), write, "check")  # type: ignore[arg-type]
        return
    with pytest.raises(ApiError) as raised:
        await create_in(_BreakingDb(at), write, "list your documents")  # type: ignore[arg-type]
    assert (raised.value.status, raised.value.code) == (503, code)
    assert raised.value.message.endswith("list your documents")

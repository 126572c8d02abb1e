"""A real webhook receiver for the tests: an aiohttp server on 127.0.0.1 that records every
request and answers the statuses it is told to (then 200), or holds a request unanswered."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook

from tests.conftest import free_port, wait_for


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int

    def verified(self, secret: str) -> Any:
        """The body, once its signature verifies with the reference library (else it raises)."""
        return Webhook(secret).verify(self.body, self.headers)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    port: int = field(default_factory=free_port)
    failures: list[int] = field(default_factory=list)  # answered first, in order
    hold: bool = False  # never answer (until stopped)
    got: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.failures.pop(0) if self.failures else 200
        self.got.append(Received(dict(request.headers), body, 0 if self.hold else status))
        if self.hold:
            await asyncio.Event().wait()  # until the server stops: the sender never hears
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(self, n: int, timeout_s: float = 20) -> list[Received]:
        """The first `n` requests, once they came."""

        async def enough() -> bool:
            return len(self.got) >= n

        await wait_for(enough, timeout_s=timeout_s, what=f"{n} webhook requests")
        return self.got[:n]

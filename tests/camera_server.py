"""A real camera for the tests: an aiohttp server on 127.0.0.1 answering /snapshot.jpg."""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from tests.camera_images import frame
from tests.conftest import free_port

Mode = Literal["ok", "chunked", "hang", "error"]


@dataclass
class FakeCamera:
    """Records when each snapshot was asked for; `mode` makes it answer, hang or fail."""

    mode: Mode = "ok"
    hang_s: float = 30.0
    requests: list[float] = field(default_factory=list)  # time.monotonic() of each request
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/snapshot.jpg"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/snapshot.jpg", self._snapshot)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _snapshot(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(time.monotonic())
        if self.mode == "hang":
            await asyncio.sleep(self.hang_s)
        if self.mode == "error":
            return web.Response(status=503, text="camera busy")
        # The square moves with every request, so consecutive captures differ.
        body = frame(20 + (len(self.requests) * 37) % 200)
        if self.mode == "chunked":  # no Content-Length: the reader must count for itself
            stream = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
            stream.enable_chunked_encoding()
            await stream.prepare(request)
            await stream.write(body)
            await stream.write_eof()
            return stream
        return web.Response(body=body, content_type="image/jpeg")

"""What the console's browser tests share (tests/e2e/test_console.py): the fleet they drive,
a browser tab on it that collects every error its pages log, and requests to the API."""

import os
import subprocess
import sys
from pathlib import Path
from tempfile import mkdtemp
from uuid import uuid4

import aiohttp
from playwright.async_api import ConsoleMessage, Page, expect

from taskfleet.security.auth import Scope, issue_token
from tests.conftest import JWT_SECRET

CHROMIUM = Path("/usr/bin/chromium")
# Every run takes the screenshots (a page that cannot be drawn fails); `make screenshots`
# (CONSOLE_SHOTS=docs) keeps them in docs/console/ for docs/console.md, any other run in a
# temporary folder, so that `make test` leaves the checkout as it found it.
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
SHOTS = DOCS_SHOTS if os.environ.get("CONSOLE_SHOTS") == "docs" else Path(mkdtemp(prefix="shots-"))
WORD_MS = 60  # the scripted model's pace: a reply of a dozen words streams for most of a second
expect.set_options(timeout=20_000)


async def api_ready(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


class Fleet:
    """`taskfleet api` on `port` and its workers (a chat worker unless told), their output in
    `logs`."""

    def __init__(
        self, port: int, env: dict[str, str], logs: Path, workers: tuple[str, ...] = ("chat",)
    ) -> None:
        self.base, self.port, self.env = f"http://127.0.0.1:{port}", port, env
        self.logs = [logs / "api.log", *(logs / f"{w}.log" for w in workers)]
        self.api = _start(["api", "--port", str(port)], env, self.logs[0])
        self.workers = [
            _start(["worker", w], env, log) for w, log in zip(workers, self.logs[1:], strict=True)
        ]

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs)

    def restart_api(self) -> None:
        """SIGTERM the API (it closes every socket with 1001) and start it again."""
        _stop([self.api])
        self.api = _start(["api", "--port", str(self.port)], self.env, self.logs[0])

    def stop(self) -> None:
        _stop([self.api, *self.workers])


def _start(args: list[str], env: dict[str, str], log: Path) -> "subprocess.Popen[bytes]":
    with log.open("ab") as out:
        command = [sys.executable, "-m", "taskfleet_cli", *args]
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(procs: list["subprocess.Popen[bytes]"]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class Console:
    """A browser tab on the console, and every error its pages logged (a CSP violation is
    one)."""

    def __init__(self, page: Page) -> None:
        self.page, self.errors = page, list[str]()
        # A refused token's 401 is the browser's own network note, not an error of the page;
        # a test that expects another answer adds it here.
        self.expected = ["status of 401"]
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(e in message.text for e in self.expected):
            self.errors.append(message.text)

    async def sign_in(self, user: str, scope: Scope = "user") -> None:
        page = self.page
        await page.goto("/")
        await page.get_by_label("Bearer token").fill(issue_token(JWT_SECRET, user, scope=scope))
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", name="Tasks")).to_be_visible()

    async def shot(self, name: str, *, full_page: bool = True) -> None:
        await self.page.screenshot(path=SHOTS / f"{name}.png", full_page=full_page)


async def submit(base: str, user: str, content: str, chat: str = "c1") -> str:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
    body = {"chat_id": chat, "content": content}
    async with (
        aiohttp.ClientSession(base, headers=headers) as http,
        http.post("/api/chat/stream", json=body) as r,
    ):
        assert r.status == 202, await r.text()
        return str((await r.json())["task_id"])


async def task_status(base: str, user: str, task_id: str) -> str:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
    async with (
        aiohttp.ClientSession(base, headers=headers) as http,
        http.get(f"/api/tasks/{task_id}") as r,
    ):
        return str((await r.json())["status"])


def user() -> str:
    return f"web-{uuid4().hex[:8]}"


async def cancel(base: str, user: str, task_id: str) -> None:
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
    async with (
        aiohttp.ClientSession(base, headers=headers) as http,
        http.post(f"/api/tasks/{task_id}/cancel") as r,
    ):
        assert r.status in (202, 409), await r.text()

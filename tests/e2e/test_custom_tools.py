"""A tool from an installed package (examples/acme-tools, entry-point group `taskfleet.tools`)
called by the agent through the API: the chat worker offers it, the tool worker runs it, and
its side effect happens once although the tool worker that ran it is SIGKILLed right after."""

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from taskfleet.core.settings import Settings
from tests.conftest import Proc, free_port, process_env, wait_for
from tests.e2e.conftest import wait_task
from tests.e2e.console_harness import api_ready
from tests.integration.api_client import auth

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme-tools"


@pytest.fixture(scope="module")
def acme_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed as a user would, into a directory of its own (put on the
    workers' PYTHONPATH) so the test session's own environment stays without it."""
    work = tmp_path_factory.mktemp("acme")
    shutil.copytree(EXAMPLE, work / "src")  # the build writes into its source tree
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(work / "src")],
        check=True,
    )  # fmt: skip
    return target


@dataclass
class Crm:
    """Acme's CRM: every POST opens a ticket."""

    tickets: list[dict[str, Any]] = field(default_factory=list)

    async def open_ticket(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.tickets.append({**body, "key": request.headers.get("Idempotency-Key")})
        return web.json_response({"id": f"T-{len(self.tickets)}"})


@pytest.fixture
async def crm() -> AsyncIterator[tuple[Crm, str]]:
    app, crm = web.Application(), Crm()
    app.router.add_post("/tickets", crm.open_ticket)
    async with TestServer(app) as server:
        yield crm, str(server.make_url("/tickets"))


async def test_the_agent_calls_an_installed_tool_once_across_a_worker_kill(
    settings: Settings,
    spawn: Callable[..., Proc],
    db: asyncpg.Pool,
    acme_tools: Path,
    crm: tuple[Crm, str],
) -> None:
    tickets, crm_url = crm
    path = os.pathsep.join(p for p in (str(acme_tools), os.environ.get("PYTHONPATH")) if p)
    env = functools.partial(process_env, settings, PYTHONPATH=path, ACME_CRM_URL=crm_url)
    port = free_port()
    spawn(["api", "--port", str(port)], env(), name="api")
    chat = spawn(["worker", "chat"], env(), name="chat")
    # Given a tool worker that dies right after a side effect ran and was recorded
    doomed = spawn(["worker", "tool"], env(TASKFLEET_FAULTS="after_side_effect"), name="tool-1")
    base = f"http://127.0.0.1:{port}"
    await wait_for(lambda: api_ready(base), what="the API to be ready", timeout_s=30)
    for proc in (chat, doomed):
        await wait_for(functools.partial(_started, proc), what=f"{proc.name} to start")

    # When a user asks, through the API, for both of Acme's tools
    content = (
        'tool: create_ticket {"title": "Widget squeaks", "body": "Since Tuesday"}'
        ' && tool: lookup_order {"order_id": "A-1001"}'
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/chat/stream", json={"chat_id": "acme", "content": content},
                  headers=auth("wile")) as resp,
    ):  # fmt: skip
        accepted = await resp.json()
        assert resp.status == 202, accepted

    async def died() -> bool:
        return doomed.popen.poll() is not None

    await wait_for(died, timeout_s=30, what="the tool worker to die at the fault point")
    assert '"point": "after_side_effect"' in doomed.output()
    assert len(tickets.tickets) == 1
    spawn(["worker", "tool"], env(), name="tool-2")

    # Then the chat completes with both results, and the CRM got one ticket
    done = await wait_task(db, accepted["task_id"], "completed", timeout_s=60)
    calls = {c["name"]: c for c in done["output"]["tool_calls"]}
    assert set(calls) == {"create_ticket", "lookup_order"}
    assert all(c["ok"] for c in calls.values()), calls
    assert "T-1" in done["output"]["reply"]
    assert "shipped" in done["output"]["reply"]
    assert len(tickets.tickets) == 1
    assert tickets.tickets[0]["title"] == "Widget squeaks"
    assert tickets.tickets[0]["key"]  # the model's call id, for the CRM's own idempotency


async def _started(proc: Proc) -> bool:
    return '"worker_started"' in proc.output()

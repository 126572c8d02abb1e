"""`taskfleet schedules` through a real `taskfleet api` process, whose schedule runner makes
the runs: create, list, show, pause, resume, delete with a user's token and no database; and
the synchronous client's `schedules`."""

import asyncio
import json
from collections.abc import Callable
from typing import Any
from uuid import uuid4

from taskfleet.client import Taskfleet, TaskfleetSync
from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for
from tests.e2e.test_chat_e2e import api_ready
from tests.e2e.test_cli_remote import remote_env, taskfleet


async def test_schedules_from_the_command_line(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    spawn(["api", "--port", str(port)], process_env(settings, SCHEDULER_TICK_S=0.1))
    url = f"http://127.0.0.1:{port}"
    await wait_for(lambda: api_ready(url), what="the API to be ready")
    user = f"cron-{uuid4().hex[:6]}"
    token = issue_token(JWT_SECRET, user)
    cli = remote_env(settings, url, token)

    made = taskfleet(["schedules", "create", "ping", "--every", "1", "--chat", "c9"], cli)
    assert made.returncode == 0, made.stderr
    schedule = json.loads(made.stdout)
    assert (schedule["interval_s"], schedule["task"]["chat_id"]) == (1, "c9")
    async with Taskfleet(url, token) as tf:

        async def ran() -> Any:
            return (await tf.schedules.get(schedule["id"])).last_task_id

        run = await tf.get(await wait_for(ran, what="the API's runner to make a run"))
    assert (str(run.schedule_id), run.input) == (schedule["id"], {"content": "ping"})

    listed = taskfleet(["schedules", "list", "--json"], cli)
    assert [s["id"] for s in json.loads(listed.stdout)] == [schedule["id"]]
    table = taskfleet(["schedules"], cli)
    assert table.returncode == 0, table.stderr
    assert schedule["id"] in table.stdout
    paused = json.loads(taskfleet(["schedules", "pause", schedule["id"]], cli).stdout)
    assert (paused["enabled"], paused["next_run_at"]) == (False, None)
    resumed = json.loads(taskfleet(["schedules", "resume", schedule["id"]], cli).stdout)
    assert resumed["enabled"]
    assert resumed["next_run_at"]
    shown = json.loads(taskfleet(["schedules", "show", schedule["id"]], cli).stdout)
    assert shown["id"] == schedule["id"]

    def sync_listing() -> list[str]:
        with TaskfleetSync(url, token) as tf:
            return [str(s.id) for s in tf.schedules.list()]

    assert await asyncio.to_thread(sync_listing) == [schedule["id"]]
    bad = taskfleet(["schedules", "create", "x", "--cron", "99 * * * *"], cli)
    assert bad.returncode == 1
    assert "422 invalid_schedule" in bad.stderr
    assert taskfleet(["schedules", "delete", schedule["id"]], cli).returncode == 0
    gone = taskfleet(["schedules", "show", schedule["id"]], cli)
    assert gone.returncode == 1
    assert "404 not_found" in gone.stderr

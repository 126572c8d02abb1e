"""The user commands through the API, for someone with a token and without the server's
secret or database: `taskfleet wait`, `cancel`, `retry`, `resume`, `restart`, `delete`,
`tasks --json` and `task` with TASKFLEET_URL / TASKFLEET_TOKEN (or --url / --token), against
the real fleet."""

import json
import subprocess
import sys
from collections.abc import Callable
from uuid import uuid4

import pytest

from taskfleet.client import Taskfleet, TaskfleetError
from taskfleet.core.settings import Settings
from taskfleet.security.auth import issue_token
from tests.conftest import JWT_SECRET, Proc, free_port, process_env, wait_for
from tests.e2e.test_chat_e2e import api_ready

LONG_TEXT = " ".join(f"word{i}" for i in range(120))  # 12 s at 100 ms a word


def remote_env(settings: Settings, url: str, token: str) -> dict[str, str]:
    """A laptop's environment: the API's URL and a token, no secret, no reachable database."""
    env = process_env(settings, TASKFLEET_URL=url, TASKFLEET_TOKEN=token)
    env.pop("TASKFLEET_JWT_SECRET")
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:9/nowhere"
    env["AMQP_URL"] = "amqp://nobody:x@127.0.0.1:9/"
    return env


def taskfleet(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskfleet_cli", *args],
        env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


async def test_wait_cancel_retry_and_listings_through_the_api(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    env = process_env(settings, SCRIPTED_DELAY_MS=100)
    spawn(["api", "--port", str(port)], env)
    spawn(["worker", "chat"], env)
    url = f"http://127.0.0.1:{port}"
    await wait_for(lambda: api_ready(url), what="the API to be ready")
    user = f"laptop-{uuid4().hex[:6]}"
    token = issue_token(JWT_SECRET, user)
    cli = remote_env(settings, url, token)
    async with Taskfleet(url, token) as tf:
        quick = (await tf.submit_chat("c1", "hi")).task_id
        waited = taskfleet(["wait", str(quick)], cli)
        assert waited.returncode == 0, waited.stderr
        assert json.loads(waited.stdout)["output"]["reply"] == "You said: hi"
        again = taskfleet(["retry", str(quick)], cli)
        assert again.returncode == 1
        assert "409 conflict" in again.stderr

        slow = (await tf.submit_chat("c1", LONG_TEXT)).task_id
        assert taskfleet(["wait", str(slow), "--timeout", "0.2"], cli).returncode == 124
        listed = taskfleet(["tasks", "--status", "active", "--json"], cli)
        assert listed.returncode == 0, listed.stderr
        assert [t["id"] for t in json.loads(listed.stdout)] == [str(slow)]
        cancelled = taskfleet(["cancel", str(slow)], cli)
        assert cancelled.returncode == 0, cancelled.stderr
        assert taskfleet(["wait", str(slow)], cli).returncode == 1  # cancelled, not completed
        assert taskfleet(["retry", str(slow)], cli).returncode == 0
        assert taskfleet(["wait", str(slow)], cli).returncode == 0
    everything = json.loads(taskfleet(["tasks", "--json"], cli).stdout)
    assert {t["id"] for t in everything} == {str(quick), str(slow)}
    shown = taskfleet(["task", str(quick), "--url", url, "--token", token], cli)
    assert json.loads(shown.stdout)["status"] == "completed"
    # Another user's task is not there for this token; a bad token is refused.
    other = issue_token(JWT_SECRET, f"other-{uuid4().hex[:6]}")
    hidden = taskfleet(["task", str(quick), "--token", other], cli)
    assert hidden.returncode == 1
    assert "404 not_found" in hidden.stderr
    refused = taskfleet(["tasks", "--token", "not-a-token"], cli)
    assert refused.returncode == 1
    assert "401" in refused.stderr
    # No URL nor token and no secret: one line saying what to give.
    bare = {k: v for k, v in cli.items() if k not in ("TASKFLEET_URL", "TASKFLEET_TOKEN")}
    missing = taskfleet(["wait", str(quick)], bare)
    assert missing.returncode == 2
    assert "TASKFLEET_TOKEN" in missing.stderr


async def test_resume_restart_and_delete_through_the_api(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    env = process_env(settings, SCRIPTED_DELAY_MS=100)
    spawn(["api", "--port", str(port)], env)
    spawn(["worker", "chat"], env)
    url = f"http://127.0.0.1:{port}"
    await wait_for(lambda: api_ready(url), what="the API to be ready")
    user = f"laptop-{uuid4().hex[:6]}"
    token = issue_token(JWT_SECRET, user)
    cli = remote_env(settings, url, token)
    async with Taskfleet(url, token) as tf:
        slow = str((await tf.submit_chat("c1", LONG_TEXT)).task_id)
        running = taskfleet(["delete", slow], cli)
        assert running.returncode == 1
        assert "409 conflict" in running.stderr
        await tf.cancel(slow)
        assert (await tf.wait(slow, 30)).status == "cancelled"
        # A chat answer keeps no checkpoint: nothing to resume from, restart instead
        resumed = taskfleet(["resume", slow], cli)
        assert resumed.returncode == 1
        assert "409 no_checkpoint" in resumed.stderr
        restarted = taskfleet(["restart", slow], cli)
        assert restarted.returncode == 0, restarted.stderr
        assert json.loads(restarted.stdout)["checkpoint"] is None
        await tf.cancel(slow)
        assert (await tf.wait(slow, 30)).status == "cancelled"
        assert (await tf.restart(slow)).id == (await tf.get(slow)).id
        assert (await tf.wait(slow, 60)).status == "completed"
        with pytest.raises(TaskfleetError, match="409"):
            await tf.resume(slow)
        deleted = taskfleet(["delete", slow], cli)
        assert deleted.returncode == 0, deleted.stderr
        assert json.loads(deleted.stdout) == {"id": slow, "deleted": True, "status": "completed"}
        quick = str((await tf.submit_chat("c1", "hi")).task_id)
        assert (await tf.wait(quick, 30)).status == "completed"
        assert (await tf.delete(quick)).deleted
    gone = taskfleet(["task", slow], cli)
    assert gone.returncode == 1
    assert "404 not_found" in gone.stderr

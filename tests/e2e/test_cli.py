"""The command line: `taskfleet up` runs and heals the fleet, `submit --wait`, bad settings."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import aiohttp
import pytest

from taskfleet.core.constants import TaskType
from taskfleet.core.settings import Settings
from tests.conftest import Proc, free_port, process_env, wait_for


def taskfleet(
    args: list[str], env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskfleet_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


async def _console_link_signs_in_once(banner: str, url: str) -> None:
    """The banner's console link: its code gives a working token once, then nothing."""
    found = re.search(r"signs in once within 60 s: (\S+)/console/#code=(\S+)", banner)
    assert found, banner
    assert found.group(1) == url
    async with aiohttp.ClientSession(url) as http:
        first = await http.post("/api/console/session", json={"code": found.group(2)})
        token = (await first.json())["token"]
        again = await http.post("/api/console/session", json={"code": found.group(2)})
        mine = await http.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert (first.status, again.status, mine.status) == (200, 401, 200)


class TestUp:
    async def test_up_serves_restarts_a_killed_worker_and_stops_cleanly(
        self, settings: Settings, spawn: Callable[..., Proc]
    ) -> None:
        port = free_port()
        env = process_env(settings, API_PORT=port, SHUTDOWN_GRACE_S=10)
        del env["TASKFLEET_JWT_SECRET"]  # `up` makes one for its run and prints a token
        fleet = spawn(["up"], env, name="up")

        async def welcome() -> re.Match[str] | None:
            return re.search(r"TASKFLEET_JWT_SECRET=(\S+) \S*taskfleet submit", fleet.output())

        secret = (await wait_for(welcome, what="the welcome text", timeout_s=30)).group(1)
        output = fleet.output()
        assert f"API on http://127.0.0.1:{port}" in output
        # Printed once the fleet is ready: after every child's start-up logs, not among them
        banner_at = output.index("taskfleet is up")
        assert "not ready yet" not in output
        assert output.count('"worker_started"', 0, banner_at) == 4
        assert '"api_started"' in output[:banner_at]
        client_env = {**env, "TASKFLEET_JWT_SECRET": secret}
        url = f"http://127.0.0.1:{port}"

        async def api_ready() -> bool:
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(api_ready, what="the API of the fleet")
        await _console_link_signs_in_once(output, url)
        done = taskfleet(["submit", "first", "--wait", "--url", url, "--timeout", "30"], client_env)
        assert (done.returncode, done.stdout.strip()) == (0, "You said: first"), done.stderr

        # When its chat worker dies, the fleet starts another and serves again
        worker_pid = _child_pids(fleet, "chat-worker")[-1]
        os.kill(worker_pid, signal.SIGKILL)

        async def restarted() -> bool:
            return len(_child_pids(fleet, "chat-worker")) == 2

        await wait_for(restarted, what="the worker to be restarted")
        again = taskfleet(
            ["submit", "second", "--wait", "--url", url, "--timeout", "30"], client_env
        )
        assert (again.returncode, again.stdout.strip()) == (0, "You said: second"), again.stderr

        # And SIGTERM stops the fleet and its children
        fleet.popen.send_signal(signal.SIGTERM)
        try:
            assert fleet.popen.wait(timeout=45) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the fleet did not stop:\n{fleet.output()[-6000:]}") from None
        assert "fleet_stopped" in fleet.output()
        pids = _child_pids(fleet, "chat-worker") + _child_pids(fleet, "api")
        assert len(pids) == 3
        for pid in pids:
            assert not _alive(pid), f"child {pid} still running"


def _child_pids(fleet: Proc, child: str) -> list[int]:
    pids = []
    for line in fleet.output().splitlines():
        if line.startswith("{") and '"child_started"' in line:
            record = json.loads(line)
            if record["child"] == child:
                pids.append(int(record["pid"]))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie that nobody reaped yet is not running.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


class TestStartupErrors:
    def test_bad_setting_stops_the_process_with_one_line_naming_the_variable(
        self, settings: Settings
    ) -> None:
        result = taskfleet(["worker", "chat"], process_env(settings, SHUTDOWN_GRACE_S="soon"))
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("taskfleet: configuration error: SHUTDOWN_GRACE_S:")

    def test_unreachable_database_is_one_line_naming_it(self, settings: Settings) -> None:
        env = process_env(settings, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x")
        result = taskfleet(["api", "--port", str(free_port())], env)
        assert result.returncode == 3
        assert result.stderr.strip().startswith("taskfleet: cannot start: DATABASE_URL:")
        assert len(result.stderr.strip().splitlines()) == 1

    def test_api_without_a_jwt_secret_refuses_to_start(self, settings: Settings) -> None:
        env = process_env(settings)
        del env["TASKFLEET_JWT_SECRET"]
        result = taskfleet(["api", "--port", str(free_port())], env)
        assert result.returncode == 2
        assert "TASKFLEET_JWT_SECRET" in result.stderr

    def test_api_with_a_short_jwt_secret_refuses_to_start(self, settings: Settings) -> None:
        env = process_env(settings, TASKFLEET_JWT_SECRET="short-and-guessable")
        result = taskfleet(["api", "--port", str(free_port())], env)
        assert result.returncode == 2
        line = result.stderr.strip()
        assert "TASKFLEET_JWT_SECRET: at least 32 characters, got 19" in line
        assert len(line.splitlines()) == 1
        assert "guessable" not in line

    @pytest.mark.parametrize("setting", ["METRICS_PORT", "API_METRICS_PORT", "API_PORT"])
    def test_a_port_that_is_taken_is_one_line_naming_its_setting(
        self, settings: Settings, setting: str
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            ports = {"METRICS_PORT": 0, "API_METRICS_PORT": free_port(), "API_PORT": free_port()}
            ports[setting] = port
            args = (
                ["worker", "chat"]
                if setting == "METRICS_PORT"
                else ["api", "--port", str(ports["API_PORT"])]
            )
            result = taskfleet(args, process_env(settings, **ports))
        assert result.returncode == 3
        line = result.stderr.strip()
        assert line.startswith(f"taskfleet: cannot start: {setting}")
        assert f":{port}" in line
        assert len(line.splitlines()) == 1


class TestOperatorCommands:
    async def test_tasks_task_queues_and_dlq_commands_read_the_real_state(
        self, settings: Settings
    ) -> None:
        import asyncpg

        from taskfleet.broker.publisher import new_task
        from taskfleet.runtime import registry
        from taskfleet.runtime.kernel import open_kernel
        from taskfleet.store.pool import create_pool
        from taskfleet.store.quotas import Limits
        from taskfleet.store.records import NewTask

        user = f"ops-{os.getpid()}"
        async with open_kernel(settings, name="cli-test", relay=False) as kernel:
            new: NewTask = new_task(
                settings, type=TaskType.CHAT, user_id=user, chat_id="c", input={"content": "listed"}
            )
            limits = Limits.from_settings(settings)
            await kernel.store.submit_chat(
                kernel.pool, new, content="listed", relay_grace_s=3600, limits=limits
            )
        env = process_env(settings, COLUMNS="200")
        listed = taskfleet(["tasks", "--user", user], env)
        assert listed.returncode == 0, listed.stderr
        assert str(new.task_id) in listed.stdout
        assert "queued" in listed.stdout
        as_json = taskfleet(["tasks", "--user", user, "--status", "active", "--json"], env)
        assert [t["id"] for t in json.loads(as_json.stdout)] == [str(new.task_id)]
        done = taskfleet(["tasks", "--user", user, "--status", "completed,failed", "--json"], env)
        assert json.loads(done.stdout) == []
        assert taskfleet(["tasks", "--status", "nope"], env).returncode == 2
        shown = taskfleet(["task", str(new.task_id)], env)
        task = json.loads(shown.stdout)
        assert (task["id"], task["status"], task["input"]) == (
            str(new.task_id), "queued", {"content": "listed"},
        )  # fmt: skip
        assert task["message"]["status"] == "pending"
        assert taskfleet(["task", "not-an-id"], env).returncode == 2
        queues = taskfleet(["queues"], env)
        assert queues.returncode == 0, queues.stderr
        for name in ("chat_tasks", "chat_tasks.dlq", "camera_analysis.dlq"):
            assert name in queues.stdout
        depths = json.loads(taskfleet(["queues", "--json"], env).stdout)
        assert {"chat_tasks", "chat_tasks.dlq"} <= {q["name"] for q in depths}
        pool: asyncpg.Pool = await create_pool(settings.database_url, size=1)
        paused = registry.Registration("chat", "chat_tasks", 1, 5.0, host=f"cli-{user}")
        await registry.beat(pool, paused, [], {}, {"memory": "over the soft limit"})
        workers = json.loads(taskfleet(["workers", "--json"], env).stdout)
        [mine] = [w for w in workers if w["host"] == paused.host]
        assert (mine["paused"], mine["rss_bytes"] > 0) == ({"memory": "over the soft limit"}, True)
        table = taskfleet(["workers"], env).stdout
        assert "MiB" in table
        assert "memory" in table.split(paused.host, 1)[1].splitlines()[0]
        await registry.mark_stopped(pool, paused)
        dead = taskfleet(["dlq", "list", "chat_tasks"], env)
        assert dead.returncode == 0, dead.stderr
        assert taskfleet(["dlq", "list", "nope"], env).returncode == 2
        await pool.execute("DELETE FROM tasks WHERE id = $1", new.task_id)
        await pool.close()

    async def test_token_and_revoke(self, settings: Settings) -> None:
        from taskfleet.security.auth import verify_token
        from taskfleet.store.pool import create_pool

        env = process_env(settings)
        minted = taskfleet(["token", "erin", "--ttl", "10m"], env)
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        who = verify_token(env["TASKFLEET_JWT_SECRET"], token)
        assert who.user_id == "erin"
        done = taskfleet(["revoke", token, "--reason", "laptop lost"], env)
        assert done.returncode == 0, done.stderr
        assert f"revoked token {who.jti} of erin" in done.stdout
        pool = await create_pool(settings.database_url, size=1)
        try:
            row = await pool.fetchrow("SELECT * FROM revoked_tokens WHERE jti = $1", who.jti)
        finally:
            await pool.close()
        assert row is not None
        assert row["reason"] == "laptop lost"
        assert abs(row["expires_at"].timestamp() - who.expires_at) < 1
        bad = taskfleet(["revoke", "not-a-token"], env)
        assert bad.returncode == 2
        assert bad.stderr.count("\n") == 1
        assert "configuration error: token: invalid token" in bad.stderr

    async def test_console_link_prints_a_link_whose_code_redeems_once(
        self, settings: Settings
    ) -> None:
        from taskfleet.security.auth import verify_token
        from taskfleet.store.pool import create_pool
        from taskfleet.store.signin import redeem_code

        env = process_env(settings, API_PORT=8123)
        printed = taskfleet(["console-link", "--user", "zed", "--scope", "admin"], env)
        assert printed.returncode == 0, printed.stderr
        link = printed.stdout.strip()
        assert link.startswith("http://127.0.0.1:8123/console/#code=")
        pool = await create_pool(settings.database_url, size=1)
        try:
            token = await redeem_code(pool, link.split("#code=", 1)[1])
            again = await redeem_code(pool, link.split("#code=", 1)[1])
        finally:
            await pool.close()
        assert token is not None
        assert again is None
        who = verify_token(env["TASKFLEET_JWT_SECRET"], token)
        assert (who.user_id, who.scope) == ("zed", "admin")
        assert 11.9 * 3600 < who.expires_at - time.time() <= 12 * 3600  # --ttl's default

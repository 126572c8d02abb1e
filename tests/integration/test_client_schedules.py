"""The client's schedules and `taskfleet schedules` against the API (in process, on the real
servers): made, listed, read, changed, paused, resumed and deleted; a refusal is the API's
error, and the command's one line with exit 1."""

import asyncio
import json
import sys
from typing import Any

import pytest

from taskfleet.client import Taskfleet, TaskfleetError, TaskfleetSync
from taskfleet.runtime.kernel import Kernel
from taskfleet_cli import main as cli_main
from taskfleet_cli.main import main
from tests.integration.api_client import api, new_user, token


async def test_the_client_keeps_a_schedule(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client, Taskfleet(str(client.make_url("")), token(user)) as tf:
        made = await tf.schedules.create(
            "c1", "report", cron="0 9 * * *", timezone="Europe/Paris", missed="run_once",
            metadata={"kind": "report"}, idempotency_key="report-1",
        )  # fmt: skip
        again = await tf.schedules.create(
            "c1", "report", cron="0 9 * * *", timezone="Europe/Paris", missed="run_once",
            metadata={"kind": "report"}, idempotency_key="report-1",
        )  # fmt: skip
        listed = await tf.schedules.list()
        changed = await tf.schedules.update(made.id, interval_s=600)
        paused = await tf.schedules.pause(made.id)
        resumed = await tf.schedules.resume(made.id)
        read = await tf.schedules.get(made.id)
        await tf.schedules.delete(made.id)
        with pytest.raises(TaskfleetError) as gone:
            await tf.schedules.get(made.id)
        with pytest.raises(TaskfleetError) as refused:
            await tf.schedules.create("c1", "x", interval_s=5, cron="* * * * *")
    assert again.id == made.id
    assert [s.id for s in listed] == [made.id]
    assert (made.task.metadata, made.missed, made.enabled) == ({"kind": "report"}, "run_once", True)
    assert (changed.cron, changed.interval_s, changed.timezone) == (None, 600, "Europe/Paris")
    assert (paused.enabled, paused.next_run_at) == (False, None)
    assert resumed.enabled
    assert resumed.next_run_at is not None
    assert read.updated_at >= made.updated_at
    assert (gone.value.status, refused.value.status) == (404, 422)
    assert refused.value.code == "invalid_schedule"


def sync_calls(url: str, user: str) -> list[Any]:
    """The same calls with TaskfleetSync (in a thread: it runs a loop of its own)."""
    with TaskfleetSync(url, token(user)) as tf:
        made = tf.schedules.create("c3", "hello", interval_s=30)
        changed = tf.schedules.update(made.id, enabled=False)
        listed = tf.schedules.list()
        read = tf.schedules.get(made.id)
        tf.schedules.delete(made.id)
        return [made.interval_s, changed.enabled, [s.id for s in listed] == [made.id], read.id]


async def test_the_sync_client_keeps_a_schedule(kernel: Kernel) -> None:
    user = new_user()
    async with api(kernel) as client:
        url = str(client.make_url("")).rstrip("/")
        interval_s, enabled, listed, read = await asyncio.to_thread(sync_calls, url, user)
    assert (interval_s, enabled, listed) == (30, False, True)
    assert read is not None


def taskfleet(url: str, user: str, *args: str) -> int:
    """`taskfleet ARGS` in this process (on a loop of its own: call it in a thread)."""
    with pytest.raises(SystemExit) as ended:
        main([*args, "--url", url, "--token", token(user)])
    code = ended.value.code
    if isinstance(code, str):  # the interpreter would print it and exit 1
        print(code, file=sys.stderr)
        return 1
    return int(code or 0)


async def test_the_command_line_keeps_a_schedule(
    kernel: Kernel, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command configures the process's logging onto this test's captured stdout, which is
    # closed after it: every later test's log line would fail. Logging is not what is tried here.
    monkeypatch.setattr(cli_main, "configure_logging", lambda *_: None)
    user = new_user()
    async with api(kernel) as client:
        url = str(client.make_url("")).rstrip("/")

        async def run(*args: str) -> tuple[int, Any]:
            code = await asyncio.to_thread(taskfleet, url, user, "schedules", *args)
            out = capsys.readouterr()
            return code, (json.loads(out.out) if out.out.startswith(("{", "[")) else out)

        code, made = await run("create", "hi", "--every", "60", "--chat", "c2", "--paused")
        assert (code, made["interval_s"], made["enabled"]) == (0, 60, False)
        assert (await run("resume", made["id"]))[1]["enabled"] is True
        assert (await run("pause", made["id"]))[1]["enabled"] is False
        assert (await run("show", made["id"]))[1]["id"] == made["id"]
        assert [s["id"] for s in (await run("list", "--json"))[1]] == [made["id"]]
        code, table = await run("list")
        assert code == 0
        assert made["id"] in table.out
        assert "every 60s" in table.out
        code, refused = await run("create", "x", "--cron", "0 0 30 2 *")
        assert code == 1
        assert "422 invalid_schedule" in refused.err
        assert (await run("delete", made["id"]))[0] == 0
        code, gone = await run("show", made["id"])
        assert code == 1
        assert "404 not_found" in gone.err

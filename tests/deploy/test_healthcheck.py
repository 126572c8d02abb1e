"""The image's HEALTHCHECK (taskfleet.runtime.probe): it probes the port of the service the
container runs, answers healthy for a live service and unhealthy once nothing answers, and a
one-shot command is healthy while it runs."""

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from taskfleet.core.settings import load_settings
from taskfleet.runtime import probe
from taskfleet.runtime.health import add_health_routes, serve
from taskfleet.runtime.probe import command_of, health_port


@pytest.mark.parametrize(
    ("argv", "env", "port"),
    [
        (["tini", "--", "taskfleet", "api"], {}, 8080),
        (
            ["/opt/taskfleet/bin/python", "/opt/taskfleet/bin/taskfleet", "api", "--port", "9000"],
            {},
            9000,
        ),
        (["tini", "--", "taskfleet", "api", "--port=9001"], {"API_PORT": "1"}, 9001),
        (["tini", "--", "taskfleet", "api"], {"API_PORT": "8081"}, 8081),
        (["tini", "--", "taskfleet", "worker", "doc"], {}, 9103),
        (["python", "-m", "taskfleet_cli", "worker", "chat"], {"METRICS_PORT": "9200"}, 9200),
        (["tini", "--", "taskfleet", "migrate"], {}, None),
        (["tini", "--", "taskfleet", "cleanup", "--older-than", "30d"], {}, None),
    ],
)
def test_the_healthcheck_probes_the_port_of_the_service(
    argv: list[str], env: dict[str, str], port: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("API_PORT", "METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert health_port(command_of(argv), load_settings(**env)) == port


async def test_the_healthcheck_answers_for_a_live_service(tmp_path: Path) -> None:
    async def ready() -> dict[str, bool]:
        return {"ok": True}

    app = web.Application()
    add_health_routes(app, ready)
    runner = await serve(app, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    cmdline = tmp_path / "cmdline"
    try:
        cmdline.write_bytes(
            b"\0".join([b"tini", b"--", b"taskfleet", b"api", b"--port", str(port).encode(), b""])
        )
        assert await asyncio.to_thread(probe.main, cmdline) == 0
    finally:
        await runner.cleanup()
    # Nothing answers any more: unhealthy.
    assert await asyncio.to_thread(probe.main, cmdline) == 1
    # A one-shot command serves nothing and is healthy while it runs.
    cmdline.write_bytes(b"tini\0--\0taskfleet\0migrate\0")
    assert await asyncio.to_thread(probe.main, cmdline) == 0

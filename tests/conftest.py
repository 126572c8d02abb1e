"""Shared fixtures: a private database and broker namespace per test session (DESIGN.md §11).

RabbitMQ and PostgreSQL come from AMQP_URL / DATABASE_URL, else localhost, else
testcontainers where a Docker engine answers; else the run fails naming what is missing.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from taskfleet.broker.topology import delete_namespace
from taskfleet.core.settings import Settings
from taskfleet.store.migrate import migrate
from taskfleet.store.pool import drop_database, with_database

# Fixtures of the fake servers the tests drive real clients against.
pytest_plugins = ["tests.smtp_server"]

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
JWT_SECRET = "test-secret-" + "x" * 32


async def _pg_reachable(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(with_database(dsn, "postgres"), timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def _amqp_reachable(url: str) -> bool:
    try:
        conn = await aio_pika.connect(url, timeout=5)
    except Exception:
        return False
    await conn.close()
    return True


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@dataclass(frozen=True)
class Infra:
    database_url: str  # server DSN; the session's database name is set per session
    amqp_url: str


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    pg = os.environ.get("DATABASE_URL", DEFAULT_PG)
    amqp = os.environ.get("AMQP_URL", DEFAULT_AMQP)
    containers: list[Any] = []
    missing = []
    if not asyncio.run(_pg_reachable(pg)):
        missing.append(f"PostgreSQL at {pg.rsplit('@', 1)[-1]}")
    if not asyncio.run(_amqp_reachable(amqp)):
        missing.append(f"RabbitMQ at {amqp.rsplit('@', 1)[-1]}")
    if missing and _docker_works():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        if any(m.startswith("PostgreSQL") for m in missing):
            container = PostgresContainer("postgres:16").start()
            containers.append(container)
            pg = container.get_connection_url(driver=None)
        if any(m.startswith("RabbitMQ") for m in missing):
            rabbit = RabbitMqContainer("rabbitmq:3.13").start()
            containers.append(rabbit)
            port = rabbit.get_exposed_port(5672)
            amqp = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{port}/"
        missing = []
    if missing:
        pytest.exit(
            "integration tests need " + " and ".join(missing) + " (set DATABASE_URL/AMQP_URL,"
            " start them, or run where Docker works for testcontainers)",
            returncode=1,
        )
    yield Infra(pg, amqp)
    for container in containers:
        container.stop()


@pytest.fixture(scope="session")
async def settings(infra: Infra) -> AsyncIterator[Settings]:
    """Settings for this session: its own database and namespace, short delays for tests."""
    tag = uuid.uuid4().hex[:10]
    dsn = with_database(infra.database_url, f"taskfleet_test_{tag}")
    s = Settings(
        AMQP_URL=infra.amqp_url,
        DATABASE_URL=dsn,
        TASKFLEET_NAMESPACE=f"t{tag}",
        TASKFLEET_JWT_SECRET=JWT_SECRET,
        RETRY_BASE_S=0.3,
        RETRY_MAX_S=5,
        OUTBOX_GRACE_S=0.5,
        OUTBOX_POLL_S=0.2,
        THROTTLE_DELAY_S=0.2,
        SHUTDOWN_GRACE_S=5,
        AMQP_HEARTBEAT_S=5,
    )
    await migrate(dsn)
    yield s
    await delete_namespace(s)
    await drop_database(dsn)


# -- helpers -------------------------------------------------------------------------------------


async def wait_for(
    probe: Callable[[], Awaitable[Any]], *, timeout_s: float = 20.0, what: str = "condition"
) -> Any:
    """Poll `probe` until it returns something truthy; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(settings: Settings, **extra: Any) -> dict[str, str]:
    """The environment of a `taskfleet` child process for this test session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env.update(
        AMQP_URL=settings.amqp_url,
        DATABASE_URL=settings.database_url,
        TASKFLEET_NAMESPACE=settings.namespace,
        TASKFLEET_JWT_SECRET=JWT_SECRET,
        RETRY_BASE_S=str(settings.retry_base_s),
        OUTBOX_GRACE_S=str(settings.outbox_grace_s),
        OUTBOX_POLL_S=str(settings.outbox_poll_s),
        METRICS_PORT="0",
        API_METRICS_PORT="0",
        LOG_FORMAT="json",
        AMQP_HEARTBEAT_S="5",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start `taskfleet ARGS` as a child process; every child is killed at teardown."""
    procs: list[Proc] = []

    def start(args: list[str], env: dict[str, str], name: str | None = None) -> Proc:
        name = name or "-".join(args)
        log = tmp_path / f"{name}-{len(procs)}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "taskfleet_cli", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        proc = Proc(name, popen, log)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.kill()
        proc.popen.wait(timeout=10)

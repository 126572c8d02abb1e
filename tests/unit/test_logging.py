"""LOG_FORMAT: console for a human at a terminal, JSON for anything else (auto, the default)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import TextIO

import pytest
import structlog

from taskfleet.core.logging import renderer_for, resolve_format
from taskfleet.core.settings import load_settings


@pytest.fixture
def terminal() -> Iterator[TextIO]:
    """The writing end of a real pseudo-terminal, as stdout is under `make run`."""
    leader, follower = os.openpty()
    with os.fdopen(follower, "w") as stream:
        yield stream
    os.close(leader)


@pytest.fixture
def pipe() -> Iterator[TextIO]:
    """A pipe, as stdout is under a log collector, `docker compose` or the tests."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        yield stream
    os.close(read_end)


def test_auto_is_console_on_a_terminal(terminal: TextIO) -> None:
    assert resolve_format("auto", terminal) == "console"
    assert isinstance(renderer_for("auto", terminal), structlog.dev.ConsoleRenderer)


def test_auto_is_json_on_a_pipe(pipe: TextIO) -> None:
    assert resolve_format("auto", pipe) == "json"
    assert isinstance(renderer_for("auto", pipe), structlog.processors.JSONRenderer)


def test_an_explicit_format_wins_over_the_terminal(terminal: TextIO, pipe: TextIO) -> None:
    assert isinstance(renderer_for("json", terminal), structlog.processors.JSONRenderer)
    assert isinstance(renderer_for("console", pipe), structlog.dev.ConsoleRenderer)


def test_a_stream_that_cannot_say_is_json() -> None:
    class Bare:  # a stdout replaced by something without isatty()
        def write(self, text: str) -> int:
            return len(text)

    assert resolve_format("auto", Bare()) == "json"  # type: ignore[arg-type]


def test_log_format_defaults_to_auto_and_takes_it_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert load_settings().log_format == "auto"
    monkeypatch.setenv("LOG_FORMAT", "Console")
    assert load_settings().log_format == "console"


LIBRARY_LINES = """
import logging, warnings
from taskfleet.core.logging import configure_logging
configure_logging("json", "{level}")
import structlog
structlog.get_logger("t").info("own_event", n=1)
warnings.warn("a deprecated call", DeprecationWarning, stacklevel=1)
logging.getLogger("asyncpg.pool").warning("connection %s lost", 7)
logging.getLogger("aiohttp.access").info("chatter below WARNING")
logging.getLogger("aiormq.connection").debug("frame")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("asyncio").exception("Task exception was never retrieved")
"""


def _run_library_lines(level: str) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", LIBRARY_LINES.replace("{level}", level)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr == ""
    return [json.loads(line) for line in done.stdout.splitlines()]  # each line JSON, or fails


def test_library_loggers_and_warnings_are_json_lines() -> None:
    lines = _run_library_lines("info")
    by_logger = {str(line.get("logger", "structlog")): line for line in lines}
    assert set(by_logger) == {"structlog", "py.warnings", "asyncpg.pool", "asyncio"}
    assert by_logger["structlog"]["event"] == "own_event"
    assert "a deprecated call" in str(by_logger["py.warnings"]["event"])
    assert by_logger["asyncpg.pool"] | {"timestamp": None} == {
        "event": "connection 7 lost", "level": "warning", "logger": "asyncpg.pool",
        "timestamp": None,
    }  # fmt: skip
    assert "ZeroDivisionError" in str(by_logger["asyncio"]["exception"])


def test_library_debug_lines_pass_at_log_level_debug() -> None:
    loggers = {str(line.get("logger")) for line in _run_library_lines("debug")}
    assert {"aiohttp.access", "aiormq.connection"} <= loggers

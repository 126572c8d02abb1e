"""structlog setup: JSON lines on stdout, or a console renderer for humans.

LOG_FORMAT=auto (the default) renders for a human when stdout is a terminal (`make run`) and
JSON otherwise: a log collector, a pipe or a file always gets one JSON object a line."""

import logging
import sys
from typing import TextIO

import structlog


def resolve_format(log_format: str, stream: TextIO) -> str:
    """`console` or `json`: `auto` is console on a terminal, JSON anywhere else."""
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if callable(isatty) and isatty() else "json"


def renderer_for(log_format: str, stream: TextIO) -> structlog.typing.Processor:
    """The structlog processor that renders each line: console for a human, else JSON."""
    if resolve_format(log_format, stream) == "console":
        return structlog.dev.ConsoleRenderer()
    return structlog.processors.JSONRenderer()


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog once per process. Context is merged from contextvars per message.
    `stream` (default stdout): stderr for a command whose stdout is its answer (`--json`)."""
    stream = stream or sys.stdout
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer_for(log_format, stream),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiormq, aiohttp.access) log through stdlib; keep their warnings, drop chatter.
    logging.basicConfig(stream=stream, level=logging.WARNING, format="%(name)s %(message)s")

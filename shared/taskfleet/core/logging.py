"""structlog setup: JSON lines on stdout, or a console renderer for humans.

LOG_FORMAT=auto (the default) renders for a human when stdout is a terminal (`make run`) and
JSON otherwise: a log collector, a pipe or a file always gets one JSON object a line.

The libraries log through the standard library (aiormq, aio_pika, aiohttp, asyncpg, asyncio,
and warnings as `py.warnings`): their records are rendered by the same processors through
structlog's stdlib integration (`ProcessorFormatter`), so their lines are JSON too, with
`logger` naming the library. Their chatter is dropped below WARNING unless LOG_LEVEL=debug."""

import logging
import sys
from typing import TextIO

import structlog

from taskfleet.core.tracing import add_trace_ids

# Fields every line gets, whether from structlog or from a library's stdlib logger.
_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    add_trace_ids,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


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


def library_handler(log_format: str, stream: TextIO) -> logging.Handler:
    """A stdlib handler that renders a library's records as structlog renders its own."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *_SHARED,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer_for(log_format, stream),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    return handler


def configure_logging(
    log_format: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog once per process. Context is merged from contextvars per message.
    `stream` (default stdout): stderr for a command whose stdout is its answer (`--json`)."""
    stream = stream or sys.stdout
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info,
            renderer_for(log_format, stream),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    # Libraries: their warnings and errors always, their debug lines with LOG_LEVEL=debug.
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(library_handler(log_format, stream))
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn(...) becomes a `py.warnings` record

"""structlog setup: JSON lines on stdout, or a console renderer for humans."""

import logging
import sys

import structlog


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    """Configure structlog once per process. Context is merged from contextvars per message."""
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiormq, aiohttp.access) log through stdlib; keep their warnings, drop chatter.
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(name)s %(message)s")

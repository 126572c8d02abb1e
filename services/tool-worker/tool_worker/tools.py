"""The built-in tools with their limits, and the installed packages' ones: what `taskfleet
worker tool` runs."""

from taskfleet.data.plugins import CustomTool, installed_tools
from taskfleet.data.toolspecs import (
    CalculatorArgs,
    CurrentTimeArgs,
    HttpGetArgs,
    SearchDocumentsArgs,
    SendEmailArgs,
    ToolArgs,
)
from tool_worker.calculator import calculator
from tool_worker.clock import current_time
from tool_worker.docsearch import search_documents
from tool_worker.mail import SMTP_TIMEOUT_S, send_email
from tool_worker.registry import RateLimit, Registry, Tool, tool
from tool_worker.settings import ToolWorkerSettings
from tool_worker.web import http_get


def default_registry(settings: ToolWorkerSettings) -> Registry:
    """Rate limits are per process: a fleet of N tool workers allows N times as much."""
    registry = Registry()
    registry.add(
        tool(
            "calculator",
            calculator,
            args=CalculatorArgs,
            timeout_s=2,
            rate=RateLimit(per_s=50, burst=50),
        )
    )
    registry.add(
        tool(
            "current_time",
            current_time,
            args=CurrentTimeArgs,
            timeout_s=2,
            rate=RateLimit(per_s=50, burst=50),
        )
    )
    registry.add(
        tool(
            "http_get",
            http_get,
            args=HttpGetArgs,
            timeout_s=settings.http_get_timeout_s + 2,
            rate=RateLimit(per_s=5, burst=10),
        )
    )
    registry.add(
        tool(
            "send_email",
            send_email,
            args=SendEmailArgs,
            timeout_s=SMTP_TIMEOUT_S + 5,
            rate=RateLimit(per_s=2, burst=5),
            side_effect=True,
        )
    )
    registry.add(
        tool(
            "search_documents",
            search_documents,
            args=SearchDocumentsArgs,
            timeout_s=15,
            rate=RateLimit(per_s=20, burst=20),
        )
    )
    for custom in installed_tools():
        registry.add(plugged_in(custom))
    return registry


def plugged_in(custom: CustomTool) -> Tool[ToolArgs]:
    """An installed package's tool (taskfleet.data.plugins), run as the built-in ones are."""
    return Tool(
        name=custom.name,
        args=custom.args,
        fn=custom.fn,
        timeout_s=custom.timeout_s,
        rate=RateLimit(per_s=custom.rate_per_s, burst=custom.rate_burst),
        side_effect=custom.side_effect,
        description=custom.description,
    )

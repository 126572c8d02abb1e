"""`current_time`: now, in a time zone."""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskfleet.data.toolspecs import CurrentTimeArgs
from tool_worker.registry import ToolContext, ToolError


async def current_time(args: CurrentTimeArgs, _: ToolContext) -> dict[str, Any]:
    """The `current_time` tool: now in an IANA zone (ISO 8601 to the second, the weekday, Unix
    seconds); ToolError for a zone it does not know."""
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: a key that is a path
        raise ToolError(f"unknown time zone {args.timezone!r}; use an IANA name") from None
    now = datetime.now(UTC).astimezone(zone)
    return {
        "timezone": args.timezone,
        "iso": now.isoformat(timespec="seconds"),
        "weekday": now.strftime("%A"),
        "unix": int(now.timestamp()),
    }

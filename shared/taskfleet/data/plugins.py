"""Tools from other packages, through the entry-point group `taskfleet.tools` (docs/tools.md).

A package adds a tool without forking taskfleet by declaring, in its pyproject.toml,

    [project.entry-points."taskfleet.tools"]
    create_ticket = "acme_tools:create_ticket"

where `acme_tools.create_ticket` is a CustomTool. Every installed one is offered to the model by
the chat worker and run by the tool worker exactly as a built-in tool: its arguments checked
against its model, its timeout and rate limit applied, and, with `side_effect=True`, the same
at-most-once ledger as `send_email`. `examples/acme-tools/` is such a package.
"""

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol
from uuid import UUID

from taskfleet.core.errors import ConfigError
from taskfleet.data.toolspecs import CATALOGUE, ToolArgs, ToolInfo
from taskfleet.llm.types import ToolSpec
from taskfleet.store.tenancy import Db

GROUP = "taskfleet.tools"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # what every model API accepts as a function name


class ToolCall(Protocol):
    """What a tool's function is told of its call."""

    @property
    def task_id(self) -> UUID:
        """The tool_execution task: the same on every attempt of this call."""

    @property
    def call_id(self) -> str:
        """The model's id of the call (a key for the tool's own idempotency)."""

    @property
    def user_id(self) -> str:
        """Whose call it is."""

    @property
    def db(self) -> Db:
        """The database under row security: this user's rows only."""


@dataclass(frozen=True)
class CustomTool:
    """A tool: `fn(args, call)` returns a JSON-serialisable result or raises. Raise the
    kernel's PermanentError (the model is told) or RetryableError (the call runs again later;
    never from a tool with a side effect once it may have acted)."""

    name: str
    description: str
    args: type[ToolArgs]
    fn: Callable[[Any, ToolCall], Awaitable[Any]]
    timeout_s: float = 30.0
    rate_per_s: float = 10.0  # per process, as the built-in tools' limits
    rate_burst: int = 10
    side_effect: bool = False

    def info(self) -> ToolInfo:
        """The tool as the catalogue holds it."""
        return ToolInfo(self.name, self.description, self.args)


@cache
def installed_tools() -> tuple[CustomTool, ...]:
    """Every tool the installed packages declare, checked once per process; ConfigError (one
    line, naming the entry point) for one that does not load or does not fit."""
    found: list[CustomTool] = []
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        try:
            tool = point.load()
        except Exception as exc:  # whatever a third party's import raises
            raise ConfigError(
                f"{GROUP} entry point {point.name!r} does not load: {exc!r}"
            ) from None
        taken = [t.name for t in CATALOGUE] + [t.name for t in found]
        found.append(_checked(point.name, tool, taken=taken))
    return tuple(found)


def all_tool_specs() -> list[ToolSpec]:
    """The built-in tools and the installed ones, as offered to the chat model."""
    return [t.spec() for t in CATALOGUE] + [t.info().spec() for t in installed_tools()]


def _checked(point: str, tool: object, *, taken: Iterable[str]) -> CustomTool:
    where = f"{GROUP} entry point {point!r}"
    if not isinstance(tool, CustomTool):
        raise ConfigError(f"{where}: not a taskfleet CustomTool but {type(tool).__name__}")
    if not NAME.fullmatch(tool.name):
        raise ConfigError(f"{where}: tool name {tool.name!r} must match {NAME.pattern}")
    if tool.name in taken:
        raise ConfigError(f"{where}: a tool named {tool.name!r} exists already")
    if not (isinstance(tool.args, type) and issubclass(tool.args, ToolArgs)):
        raise ConfigError(f"{where}: `args` of {tool.name!r} must subclass ToolArgs")
    if tool.timeout_s <= 0 or tool.rate_per_s <= 0 or tool.rate_burst < 1:
        raise ConfigError(f"{where}: {tool.name!r} needs a positive timeout and rate limit")
    return tool

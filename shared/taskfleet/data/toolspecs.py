"""The built-in tools as the model sees them: name, description, argument model.

Shared because two services need them: chat-worker offers them to the model, tool-worker
validates the model's arguments with the same pydantic models before it runs anything
(tool_worker.registry binds each to its function, timeout, rate limit and side-effect flag).
"""

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from taskfleet.llm.types import ToolSpec

# No header injection: an address or a subject is one line.
EMAIL_PATTERN = r"^[^@\s<>,;:\"()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?$"


class ToolArgs(BaseModel):
    """Arguments of a tool: unknown fields are an error the model is told about."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CalculatorArgs(ToolArgs):
    expression: str = Field(
        min_length=1,
        max_length=500,
        description="Arithmetic: + - * / // % ** and parentheses, numbers, pi, e, and"
        " sqrt, abs, round, min, max, floor, ceil, log, log10, exp, sin, cos, tan.",
    )


class HttpGetArgs(ToolArgs):
    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://",
        description="An http(s) URL on a host the operator allowed.",
    )


class CurrentTimeArgs(ToolArgs):
    timezone: str = Field(
        "UTC", min_length=1, max_length=64, description="An IANA zone, e.g. Europe/Paris."
    )


class SendEmailArgs(ToolArgs):
    to: list[Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]] = Field(
        min_length=1, max_length=10, description="Recipient addresses."
    )
    subject: str = Field(min_length=1, max_length=200, pattern=r"^[^\r\n]*$")
    body: str = Field(max_length=20_000)


class SearchDocumentsArgs(ToolArgs):
    query: str = Field(min_length=1, max_length=500, description="Words or a phrase.")
    limit: int = Field(5, ge=1, le=20)


@dataclass(frozen=True, slots=True)
class ToolInfo:
    name: str
    description: str
    args: type[ToolArgs]

    def spec(self) -> ToolSpec:
        """The tool as the model is told of it; the arguments' JSON schema comes from `args`."""
        return ToolSpec(self.name, self.description, self.args.model_json_schema())


CATALOGUE: tuple[ToolInfo, ...] = (
    ToolInfo("calculator", "Evaluate an arithmetic expression exactly.", CalculatorArgs),
    ToolInfo("current_time", "The current date and time in a time zone.", CurrentTimeArgs),
    ToolInfo("http_get", "Fetch a web page or API response (allowed hosts only).", HttpGetArgs),
    ToolInfo("send_email", "Send an email. It is sent at most once per call.", SendEmailArgs),
    ToolInfo(
        "search_documents",
        "Search the user's uploaded documents; best matches first.",
        SearchDocumentsArgs,
    ),
)
BY_NAME: dict[str, ToolInfo] = {t.name: t for t in CATALOGUE}


def tool_specs() -> list[ToolSpec]:
    """Every tool of the catalogue, as offered to the chat model."""
    return [t.spec() for t in CATALOGUE]

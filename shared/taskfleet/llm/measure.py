"""What one model call is measured by: its duration by outcome, its time to first token, and the
tokens the server reports in the stream's usage (asked for with `stream_options.include_usage`)."""

import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span, SpanKind, StatusCode

from taskfleet.core.metrics import LLM_DURATION, LLM_FIRST_TOKEN, LLM_TOKENS
from taskfleet.core.tracing import tracer

# The outcome of a call whose consumer stopped reading it (a cancelled task, a closed stream).
ABANDONED = "abandoned"


@dataclass
class CallMeter:
    """One call of `model`, from its request (this object's creation) to `done`; a span of
    the current trace too, with the first token as an event and the tokens as attributes."""

    model: str
    started: float = field(default_factory=time.monotonic)
    first_at: float | None = None
    span: Span = field(init=False)

    def __post_init__(self) -> None:
        self.span = tracer.start_span(
            f"chat {self.model}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": self.model},
        )

    def item(self) -> None:
        """A text delta or a tool call was handed on: the first one times the first token."""
        if self.first_at is None:
            self.first_at = time.monotonic()
            LLM_FIRST_TOKEN.labels(self.model).observe(self.first_at - self.started)
            self.span.add_event("first_token")

    def usage(self, usage: Any) -> None:
        """The server's `usage` object: prompt_tokens in, completion_tokens out."""
        if not isinstance(usage, dict):
            return
        for key, direction in (("prompt_tokens", "input"), ("completion_tokens", "output")):
            count = usage.get(key)
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                LLM_TOKENS.labels(self.model, direction).inc(count)
                self.span.set_attribute(f"gen_ai.usage.{direction}_tokens", count)

    def done(self, outcome: str) -> None:
        """The call ended with `outcome` (`ok`, an error's outcome, or `abandoned`)."""
        LLM_DURATION.labels(self.model, outcome).observe(time.monotonic() - self.started)
        self.span.set_attribute("taskfleet.llm.outcome", outcome)
        if outcome not in ("ok", ABANDONED):
            self.span.set_status(StatusCode.ERROR, outcome)
        self.span.end()

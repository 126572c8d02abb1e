"""What one model call is measured by: its duration by outcome, its time to first token, and the
tokens the server reports in the stream's usage (asked for with `stream_options.include_usage`)."""

import time
from dataclasses import dataclass, field
from typing import Any

from taskfleet.core.metrics import LLM_DURATION, LLM_FIRST_TOKEN, LLM_TOKENS

# The outcome of a call whose consumer stopped reading it (a cancelled task, a closed stream).
ABANDONED = "abandoned"


@dataclass
class CallMeter:
    """One call of `model`, from its request (this object's creation) to `done`."""

    model: str
    started: float = field(default_factory=time.monotonic)
    first_at: float | None = None

    def item(self) -> None:
        """A text delta or a tool call was handed on: the first one times the first token."""
        if self.first_at is None:
            self.first_at = time.monotonic()
            LLM_FIRST_TOKEN.labels(self.model).observe(self.first_at - self.started)

    def usage(self, usage: Any) -> None:
        """The server's `usage` object: prompt_tokens in, completion_tokens out."""
        if not isinstance(usage, dict):
            return
        for key, direction in (("prompt_tokens", "input"), ("completion_tokens", "output")):
            count = usage.get(key)
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                LLM_TOKENS.labels(self.model, direction).inc(count)

    def done(self, outcome: str) -> None:
        """The call ended with `outcome` (`ok`, an error's outcome, or `abandoned`)."""
        LLM_DURATION.labels(self.model, outcome).observe(time.monotonic() - self.started)

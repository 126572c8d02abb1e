"""The `scripted` provider: deterministic and offline, for development, demos and benchmarks."""

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

_WORD = re.compile(r"\S+\s*")


@dataclass
class ScriptedModel:
    """Echo-like replies: `You said: <text>`, streamed a word at a time.

    `delay_s` between words makes it slow on purpose (demos, crash tests).
    """

    delay_s: float = 0.0
    name: str = "scripted"

    def reply_for(self, messages: list[dict[str, str]]) -> str:
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return f"You said: {last.strip()}"

    async def stream(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        for word in _WORD.findall(self.reply_for(messages)):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield word

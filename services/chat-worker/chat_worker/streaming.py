"""The reply as it is written: live deltas, batched, and the partial reply saved now and then.

One writer spans every round of the agent loop, so the reply is the text of all rounds; a
resumed task starts it from the text its earlier rounds wrote.
"""

import time
from dataclasses import dataclass, field

from taskfleet.handler import TaskContext

# Reply text is sent live at most this often (deltas are batched in between) ...
DELTA_EVERY_S = 0.05
# ... and saved as the partial reply at most this often, so a reload shows it.
PARTIAL_EVERY_S = 0.25
# Between the text of a round that called tools and the text of the next one.
ROUND_SEPARATOR = "\n\n"


@dataclass
class ReplyWriter:
    ctx: TaskContext
    prefix: str = ""
    _parts: list[str] = field(default_factory=list)
    _unsent: list[str] = field(default_factory=list)
    _saved: str = ""
    _round_start: int = 0
    _started: float = field(default_factory=time.monotonic)
    _sent_at: float = field(default_factory=time.monotonic)
    _saved_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._saved = self.prefix

    @property
    def text(self) -> str:
        """The whole reply so far: the earlier attempts' text (`prefix`) and every piece since."""
        return self.prefix + "".join(self._parts)

    def new_round(self) -> None:
        """Text of the next round starts after a separator (added when that text comes)."""
        self._round_start = len(self._parts)

    def round_text(self) -> str:
        """This round's text alone, no leading separator: a tool round's assistant content."""
        return "".join(self._parts[self._round_start :]).removeprefix(ROUND_SEPARATOR)

    async def resend_prefix(self) -> None:
        """A resumed task sends its earlier text again: it lands at offset 0, where a client
        that has it already places the same characters (docs/live-updates.md)."""
        if self.prefix:
            await self.ctx.delta(self.prefix)

    async def add(self, piece: str) -> None:
        """Add a piece of the model's text: sent live at most every DELTA_EVERY_S, saved at most
        every PARTIAL_EVERY_S. A round's first piece is set apart from the text before it by
        ROUND_SEPARATOR, unless that text ends in whitespace."""
        if not piece:
            return
        if len(self._parts) == self._round_start and self.text and not self.text[-1].isspace():
            piece = ROUND_SEPARATOR + piece
        self._parts.append(piece)
        self._unsent.append(piece)
        now = time.monotonic()
        if now - self._sent_at >= DELTA_EVERY_S:
            await self.flush()
        if now - self._saved_at >= PARTIAL_EVERY_S:
            await self.save()

    async def flush(self) -> None:
        """Send the pieces not sent yet as one delta now, whatever DELTA_EVERY_S says."""
        if self._unsent:
            await self.ctx.delta("".join(self._unsent))
            self._unsent.clear()
        self._sent_at = time.monotonic()

    async def save(self, **extra: object) -> None:
        """Save the reply so far as the partial reply (and output)."""
        reply = self.text
        await self.ctx.partial({"reply": reply, **extra}, reply=reply or None)
        self._saved, self._saved_at = reply, time.monotonic()

    async def settle(self) -> None:
        """The reply is whole: send what is unsent and, if it took long enough that a reader
        may be looking, save it (memory extraction comes next and may take a while)."""
        await self.flush()
        if self.text != self._saved and time.monotonic() - self._started >= PARTIAL_EVERY_S:
            await self.save()

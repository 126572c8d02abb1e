"""The worker's side of the parser child (doc_worker.parser): start it, stream its pages
without blocking the event loop, hold it to a wall clock per page, and turn every way it can
end (a limit, a crash, a timeout, garbage on stdout) into a clear, permanent TaskError.

The child is always killed and reaped on the way out, also when the handler is cancelled, so
the worker goes on whatever the child did.
"""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from taskfleet.errors import PermanentError, RetryableError
from taskfleet.settings import Settings

log = structlog.get_logger("doc_worker")

# One JSON line holds a page (at most ~1M characters: see parser.MAX_PAGE_CHARS).
LINE_LIMIT = 16 * 1024 * 1024
# The error codes the child may report; anything else it says is not trusted as a code.
CHILD_CODES = frozenset({"invalid_document", "document_limit", "parser_memory_limit"})


@dataclass(frozen=True, slots=True)
class ParseLimits:
    memory_mb: int
    cpu_s: int  # per page
    timeout_s: float  # per page, wall clock
    reopen_every: int  # pages between two fresh PDF readers
    page_delay_ms: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> "ParseLimits":
        return cls(settings.doc_parse_memory_mb, settings.doc_parse_cpu_s,
                   settings.doc_parse_timeout_s, settings.doc_batch_pages,
                   settings.doc_page_delay_ms)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ParsedPage:
    number: int  # 1-based
    text: str
    warning: str | None = None


def parser_failed(code: str, message: str) -> PermanentError:
    return PermanentError(message[:1000], code=code)


class ParserChild:
    """A running parser. `pages` is the document's page count; iterate `texts()` once."""

    def __init__(
        self, process: asyncio.subprocess.Process, limits: ParseLimits, stderr: Path, first: int
    ) -> None:
        self.process = process
        self.limits = limits
        self.stderr = stderr
        self.expected = first  # the page we wait for, for error messages
        self.pages = 0

    async def start(self) -> None:
        header = await self._next()
        pages = header.get("pages")
        if not isinstance(pages, int) or pages < 0:
            raise self._garbage(header)
        self.pages = pages

    async def texts(self) -> AsyncIterator[ParsedPage]:
        while True:
            line = await self._next()
            if line.get("done") is True:
                return
            number, text, warning = line.get("page"), line.get("text"), line.get("warning")
            if number != self.expected or not isinstance(text, str):
                raise self._garbage(line)
            self.expected += 1
            yield ParsedPage(number, text, warning if isinstance(warning, str) else None)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()

    async def _next(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                raw = await self.process.stdout.readline()
        except TimeoutError:
            await self.stop()
            raise parser_failed(
                "parser_timeout",
                f"page {self.expected}: the parser took longer than {self.limits.timeout_s:g}s",
            ) from None
        except ValueError:  # a line over LINE_LIMIT
            await self.stop()
            raise parser_failed(
                "parser_crashed", f"page {self.expected}: the parser wrote an oversized line"
            ) from None
        if not raw:
            raise await self._ended()
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            line = None
        if not isinstance(line, dict):
            raise self._garbage({"raw": raw[:200].decode(errors="replace")})
        if "error" in line:
            raise await self._reported(line["error"])
        return line

    async def _reported(self, error: Any) -> PermanentError:
        await self.stop()
        if not isinstance(error, dict) or error.get("code") not in CHILD_CODES:
            return self._garbage({"error": error})
        return parser_failed(str(error["code"]), str(error.get("message") or error["code"]))

    async def _ended(self) -> PermanentError:
        """stdout closed before `done`: the child died. Say how."""
        try:
            code = await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:  # it closed stdout but lives on: not our child's behaviour
            await self.stop()
            code = self.process.returncode or -signal.SIGKILL
        where = f"page {self.expected}"
        if code == -signal.SIGXCPU:
            return parser_failed(
                "parser_cpu_limit",
                f"{where}: the parser used more than its CPU limit of {self.limits.cpu_s}s",
            )
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return parser_failed("parser_crashed", f"{where}: the parser was killed by {name}")
        tail = self._stderr_tail()
        return parser_failed(
            "parser_crashed",
            f"{where}: the parser exited with status {code}" + (f": {tail}" if tail else ""),
        )

    def _garbage(self, line: dict[str, Any]) -> PermanentError:
        # Not to be trusted further; run_parser reaps it on the way out.
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        return parser_failed(
            "parser_crashed",
            f"page {self.expected}: the parser wrote something unexpected: {str(line)[:200]}",
        )

    def _stderr_tail(self) -> str:
        try:
            with self.stderr.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 400))
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


@contextlib.asynccontextmanager
async def run_parser(
    path: Path, media_type: str, first_page: int, limits: ParseLimits
) -> AsyncIterator[ParserChild]:
    """Start the child on `path` from page `first_page`; it is killed and reaped on exit."""
    stderr = path.with_name(path.name + ".stderr")
    argv = [
        sys.executable, "-m", "doc_worker.parser", str(path),
        "--media-type", media_type, "--first-page", str(first_page),
        "--memory-mb", str(limits.memory_mb), "--cpu-s", str(limits.cpu_s),
        "--reopen-every", str(limits.reopen_every),
        "--page-delay-ms", str(limits.page_delay_ms), "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
    with stderr.open("wb") as err:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=err, limit=LINE_LIMIT,
            )  # fmt: skip
        except OSError as exc:  # out of processes or memory: the machine, not the document
            raise RetryableError(
                f"cannot start the parser: {exc}", code="parser_unavailable"
            ) from exc
    child = ParserChild(process, limits, stderr, first_page)
    try:
        await child.start()
        yield child
    finally:
        await child.stop()

"""The worker's side of the parser child (doc_worker.parser): start it, stream its pages
without blocking the event loop, hold it to a wall clock per page, and turn every way it can
end (a limit, a crash, a timeout, garbage on stdout or a flood on stderr) into a clear,
permanent TaskError.

The child starts with a scrubbed environment (child_env: nothing secret) and its stderr is
capped: the worker keeps at most STDERR_LIMIT bytes of it and kills a child that writes more,
so what a hostile file makes it write never grows the worker's memory (or fills a disk).

The child is always killed and reaped on the way out, also when the handler is cancelled, so
the worker goes on whatever the child did.
"""

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import structlog

from doc_worker.settings import DocWorkerSettings
from taskfleet.handler import PermanentError, RetryableError

log = structlog.get_logger("doc_worker")

# One JSON line holds a page (at most ~1M characters: see parser.MAX_PAGE_CHARS).
LINE_LIMIT = 16 * 1024 * 1024
# The error codes the child may report; anything else it says is not trusted as a code.
CHILD_CODES = frozenset({"invalid_document", "document_limit", "parser_memory_limit"})
# The child writes to stderr only when it breaks (a traceback: a few KiB). More is not our
# parser's behaviour, and would cost the worker's memory or disk if it were kept.
STDERR_LIMIT = 64 * 1024
PARSER_COMMAND = (sys.executable, "-m", "doc_worker.parser")
# What the child may see of the worker's environment: what Python needs to start, nothing
# more. Never DATABASE_URL, AMQP_URL, ENCRYPTION_KEYS, TASKFLEET_JWT_SECRET, LLM_API_KEY...:
# a hostile file that took over the parser finds no credential in its environment.
CHILD_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH"})
CHILD_ENV_PREFIXES = ("LC_", "PYTHON")


def child_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parser child's environment: the allowed variables of `environ` (os.environ)."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k in CHILD_ENV or k.startswith(CHILD_ENV_PREFIXES)}


@dataclass(frozen=True, slots=True)
class ParseLimits:
    memory_mb: int
    cpu_s: int  # per page
    timeout_s: float  # per page, wall clock
    reopen_every: int  # pages between two fresh PDF readers
    page_delay_ms: int = 0

    @classmethod
    def from_settings(cls, settings: DocWorkerSettings) -> "ParseLimits":
        """The DOC_PARSE_* limits; DOC_BATCH_PAGES is also how often a fresh PDF reader starts."""
        return cls(
            settings.doc_parse_memory_mb,
            settings.doc_parse_cpu_s,
            settings.doc_parse_timeout_s,
            settings.doc_batch_pages,
            settings.doc_page_delay_ms,
        )


@dataclass(frozen=True, slots=True)
class ParsedPage:
    number: int  # 1-based
    text: str
    warning: str | None = None


def parser_failed(code: str, message: str) -> PermanentError:
    """A parser failure as a permanent error (the same file fails the same way), message capped."""
    return PermanentError(message[:1000], code=code)


def kill(transport: asyncio.SubprocessTransport) -> None:
    """SIGKILL the child unless it is known to have ended.

    Not transport.kill(): subprocess.Popen polls before it signals, and that poll reaps a
    child that has just exited under asyncio's child watcher, which then reports exit status
    255 ("Unknown child process pid"). An exited child keeps its pid until the watcher reaps
    it; the loop hears of that a moment later, and only in that moment could the pid be
    another process's already."""
    pid = transport.get_pid()
    if transport.get_returncode() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class CappedStderr(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's protocol of a child's pipes (stdout is the usual stream), except stderr: its
    first STDERR_LIMIT bytes are kept as they come, and a child that writes more is killed at
    once. Done in the pipe's callback, so no task has to drain it and nothing piles up."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.stderr_head = bytearray()
        self.flooded = False
        self._child: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the child's transport, so that a flood on stderr can kill the child."""
        super().connection_made(transport)
        self._child = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        """stdout goes to its stream; stderr is kept to STDERR_LIMIT, and more kills the child."""
        if fd != 2:
            super().pipe_data_received(fd, data)
            return
        if self.flooded:
            return  # the rest of what was in the pipe when it was killed
        chunk = data.encode() if isinstance(data, str) else data
        room = STDERR_LIMIT - len(self.stderr_head)
        self.stderr_head += chunk[:room]
        if len(chunk) > room:
            self.flooded = True
            if self._child is not None:
                kill(self._child)


class ParserChild:
    """A running parser. `pages` is the document's page count; iterate `texts()` once."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        pipes: CappedStderr,
        limits: ParseLimits,
        first: int,
    ) -> None:
        self.transport = transport
        self.process = asyncio.subprocess.Process(transport, pipes, asyncio.get_running_loop())
        self.pipes = pipes
        self.limits = limits
        self.expected = first  # the page we wait for, for error messages
        self.pages = 0

    @property
    def stderr(self) -> bytes:
        """What the child wrote to stderr (its first STDERR_LIMIT bytes)."""
        return bytes(self.pipes.stderr_head)

    async def start(self) -> None:
        """Read the child's first line, the page count; anything else is a PermanentError."""
        header = await self._next()
        pages = header.get("pages")
        if not isinstance(pages, int) or pages < 0:
            raise self._garbage(header)
        self.pages = pages

    async def texts(self) -> AsyncIterator[ParsedPage]:
        """The pages in order from the first asked for; any failure is a PermanentError."""
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
        """Kill the child unless it has ended, and reap it; safe to call again."""
        kill(self.transport)
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
        if self.pipes.flooded:  # killed for it: whatever stdout holds now is cut short
            await self.stop()
            raise self._flooded()
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
        if self.pipes.flooded:  # it flooded stderr on its way out, and was killed for it
            return self._flooded()
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

    def _flooded(self) -> PermanentError:
        return parser_failed(
            "parser_crashed",
            f"page {self.expected}: the parser wrote more than {STDERR_LIMIT // 1024} KiB"
            " to stderr",
        )

    def _garbage(self, line: dict[str, Any]) -> PermanentError:
        # Not to be trusted further; run_parser reaps it on the way out.
        kill(self.transport)
        return parser_failed(
            "parser_crashed",
            f"page {self.expected}: the parser wrote something unexpected: {str(line)[:200]}",
        )

    def _stderr_tail(self) -> str:
        lines = self.stderr[-400:].decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


@contextlib.asynccontextmanager
async def run_parser(
    path: Path,
    media_type: str,
    first_page: int,
    limits: ParseLimits,
    command: Sequence[str] = PARSER_COMMAND,
) -> AsyncIterator[ParserChild]:
    """Start the child on `path` from page `first_page`; it is killed and reaped on exit.

    `command` runs the parser (tests start a stand-in that misbehaves on purpose)."""
    argv = [
        *command, str(path),
        "--media-type", media_type, "--first-page", str(first_page),
        "--memory-mb", str(limits.memory_mb), "--cpu-s", str(limits.cpu_s),
        "--reopen-every", str(limits.reopen_every),
        "--page-delay-ms", str(limits.page_delay_ms), "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        # create_subprocess_exec, with the protocol that caps stderr
        transport, pipes = await loop.subprocess_exec(
            lambda: CappedStderr(LINE_LIMIT, loop),
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
    except OSError as exc:  # out of processes or memory: the machine, not the document
        raise RetryableError(f"cannot start the parser: {exc}", code="parser_unavailable") from exc
    child = ParserChild(transport, pipes, limits, first_page)
    try:
        await child.start()
        yield child
    finally:
        await child.stop()

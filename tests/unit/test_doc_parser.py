"""The parser child and the worker's side of it: real child processes, real limits.

No PostgreSQL or RabbitMQ here: these run `python -m doc_worker.parser` as the worker does.
"""

import asyncio
import itertools
import os
import re
import resource
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from doc_worker.child import (
    STDERR_LIMIT,
    ParsedPage,
    ParseLimits,
    ParserChild,
    child_env,
    run_parser,
)
from doc_worker.parser import DocumentError, PdfDocument, clean, split_text, text_pages
from fleet_api.document_upload import TextProbe, sniff
from taskfleet.core.errors import PermanentError
from tests.pdfs import Stream, build_pdf, memory_bomb_pdf, text_pdf, text_stream

LIMITS = ParseLimits(memory_mb=512, cpu_s=10, timeout_s=30, reopen_every=3)
PDF = "application/pdf"


@pytest.fixture
def file(tmp_path: Path) -> Callable[[bytes], Path]:
    def write(data: bytes) -> Path:
        path = tmp_path / "document"
        path.write_bytes(data)
        return path

    return write


async def parse_all(
    path: Path, media_type: str, first: int = 1, limits: ParseLimits = LIMITS
) -> tuple[int, list[ParsedPage]]:
    async with run_parser(path, media_type, first, limits) as parser:
        return parser.pages, [page async for page in parser.texts()]


class TestPureParsing:
    def test_text_pages_split_on_form_feeds_and_at_line_breaks(self) -> None:
        text = ("line of text\n" * 500) + "\f" + "second page\n\f\n"
        pages = text_pages(text.encode())
        assert pages[-1] == "second page\n"
        assert all(len(p) <= 3000 for p in pages)
        assert all(p.endswith("\n") for p in pages[:-1])  # cut at line breaks
        assert "".join(pages[:-1]) == "line of text\n" * 500

    def test_split_text_without_line_breaks_cuts_at_spaces_then_hard(self) -> None:
        assert all(len(p) <= 100 for p in split_text("word " * 100, 100))
        assert split_text("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]

    def test_clean_drops_nul_and_lone_surrogates(self) -> None:
        assert clean("a\x00b\ud800c") == "ab?c"

    def test_a_pdf_gives_the_text_of_each_page(self) -> None:
        pdf = PdfDocument(text_pdf(["alpha one", "beta two", "gamma three"]), reopen_every=2)
        texts = [(n, t.strip(), w) for n, t, w in pdf.texts(2)]
        assert pdf.pages == 3
        assert texts == [(2, "beta two", None), (3, "gamma three", None)]

    def test_bytes_that_are_no_pdf_are_an_invalid_document(self) -> None:
        with pytest.raises(DocumentError, match="not a PDF") as err:
            PdfDocument(bytes(range(256)) * 8, reopen_every=10)
        assert err.value.code == "invalid_document"

    def test_a_broken_pdf_after_a_valid_header_is_an_invalid_document(self) -> None:
        with pytest.raises(DocumentError, match="not a readable PDF"):
            PdfDocument(b"%PDF-1.7\n" + b"garbage " * 100, reopen_every=10)


class TestSniffing:
    def probe(self, data: bytes) -> bool:
        probe = TextProbe()
        for i in range(0, len(data), 7):  # split sequences across chunks on purpose
            probe.feed(data[i : i + 7])
        probe.feed(b"", final=True)
        return probe.ok

    def test_types_come_from_the_bytes(self) -> None:
        assert sniff(text_pdf(["x"]), False, "a.txt", "text/plain") == PDF
        text = "héllo wörld ✓\n".encode()
        assert sniff(text, self.probe(text), "notes.bin", None) == "text/plain"
        assert sniff(text, self.probe(text), "README.md", None) == "text/markdown"
        assert sniff(text, self.probe(text), None, "text/markdown; charset=utf-8") == (
            "text/markdown"
        )

    def test_binary_is_not_text(self) -> None:
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        assert not self.probe(png)
        assert sniff(png, self.probe(png), "scan.pdf", PDF) is None
        assert not self.probe("truncated é".encode()[:-1])  # an incomplete sequence at the end
        assert not self.probe(b"text with a \x00 NUL")


class TestParserChild:
    async def test_streams_every_page_from_the_first_page_asked(
        self, file: Callable[[bytes], Path]
    ) -> None:
        path = file(text_pdf([f"page {i} zebra{i}" for i in range(1, 8)]))
        pages, parsed = await parse_all(path, PDF, first=5)
        assert pages == 7
        assert [(p.number, p.text.strip()) for p in parsed] == [
            (5, "page 5 zebra5"), (6, "page 6 zebra6"), (7, "page 7 zebra7"),
        ]  # fmt: skip

    async def test_plain_text_has_pages_too(self, file: Callable[[bytes], Path]) -> None:
        path = file(("paragraph of words\n" * 400).encode())
        pages, parsed = await parse_all(path, "text/plain")
        assert pages == len(parsed) >= 2
        assert "".join(p.text for p in parsed) == "paragraph of words\n" * 400

    async def test_memory_bomb_fails_with_the_memory_limit(
        self, file: Callable[[bytes], Path]
    ) -> None:
        # Each page decodes to a 64 MB image that pypdf keeps: with the default limits (one
        # reader per batch of 10 pages), 8 of them pass 512 MiB.
        defaults = ParseLimits(memory_mb=512, cpu_s=30, timeout_s=60, reopen_every=10)
        with pytest.raises(PermanentError, match="memory limit of 512 MiB") as err:
            await parse_all(file(memory_bomb_pdf(pages=8)), PDF, limits=defaults)
        assert err.value.code == "parser_memory_limit"

    async def test_reopening_the_reader_keeps_a_long_heavy_document_under_the_limit(
        self, file: Callable[[bytes], Path]
    ) -> None:
        # The same 8 heavy pages, with a fresh reader every 3 pages, fit in 512 MiB.
        pages, parsed = await parse_all(file(memory_bomb_pdf(pages=8)), PDF)
        assert pages == len(parsed) == 8

    async def test_a_page_that_burns_cpu_fails_with_the_cpu_limit(
        self, file: Callable[[bytes], Path]
    ) -> None:
        # 250k text-matrix operators (under pypdf's 2M-token budget) and one Tj (pypdf only
        # parses a stream that shows text): seconds of CPU for one page of 9 KB.
        ops = b"BT\n" + b"1 0 0 1 0 0 Tm\n" * 250_000 + b"(x) Tj\nET\n"
        busy = Stream(zlib.compress(ops, 9))
        path = file(build_pdf([[text_stream("fine")], [busy]]))
        limits = ParseLimits(memory_mb=1024, cpu_s=1, timeout_s=60, reopen_every=10)
        with pytest.raises(PermanentError, match=r"page 2: .*CPU limit of 1s") as err:
            await parse_all(path, PDF, limits=limits)
        assert err.value.code == "parser_cpu_limit"

    async def test_a_slow_page_fails_with_the_wall_clock_timeout(
        self, file: Callable[[bytes], Path]
    ) -> None:
        limits = ParseLimits(
            memory_mb=512, cpu_s=10, timeout_s=0.5, reopen_every=10, page_delay_ms=5000
        )
        with pytest.raises(PermanentError, match="page 1: the parser took longer") as err:
            await parse_all(file(text_pdf(["slow"])), PDF, limits=limits)
        assert err.value.code == "parser_timeout"

    async def test_not_a_pdf_fails_with_a_clear_error(self, file: Callable[[bytes], Path]) -> None:
        with pytest.raises(PermanentError, match="not a PDF") as err:
            await parse_all(file(b"GIF89a" + bytes(500)), PDF)
        assert err.value.code == "invalid_document"


# Every secret the fleet's processes hold, and one that is nobody's business.
SECRETS = ("DATABASE_URL", "AMQP_URL", "ENCRYPTION_KEYS", "TASKFLEET_JWT_SECRET", "LLM_API_KEY",
           "SMTP_URL", "AWS_SECRET_ACCESS_KEY")  # fmt: skip


async def run_stand_in(path: Path, script: str) -> tuple[ParserChild, PermanentError]:
    """Run a Python `script` where the parser belongs (it ignores the parser's arguments); it
    must send a page count first. The child and the error it ended with."""
    command = [sys.executable, "-c", script]
    try:
        async with run_parser(path, PDF, 1, LIMITS, command=command) as child:
            async for _ in child.texts():
                pass
    except PermanentError as exc:
        return child, exc
    raise AssertionError("the stand-in parser did not fail")


class TestChildIsolation:
    async def test_the_real_parser_child_sees_no_secret_of_the_worker(
        self, file: Callable[[bytes], Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in SECRETS:
            monkeypatch.setenv(name, f"secret-{name.lower()}")
        monkeypatch.setenv("LANG", "C.UTF-8")
        monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
        # Slow pages keep it running while its environment is read from /proc
        limits = ParseLimits(
            memory_mb=512, cpu_s=10, timeout_s=30, reopen_every=3, page_delay_ms=300
        )
        async with run_parser(file(text_pdf(["one", "two"])), PDF, 1, limits) as parser:
            raw = await asyncio.to_thread(Path(f"/proc/{parser.process.pid}/environ").read_bytes)
            pages = [page.text.strip() async for page in parser.texts()]
        seen = dict(entry.split("=", 1) for entry in raw.decode().split("\0") if entry)
        assert not set(SECRETS) & set(seen)
        assert "secret-" not in raw.decode()
        # What Python needs to start is passed on, and it parsed
        assert (seen["LANG"], seen["PYTHONDONTWRITEBYTECODE"]) == ("C.UTF-8", "1")
        assert seen["PATH"] == os.environ["PATH"]
        assert pages == ["one", "two"]

    def test_the_environment_is_an_allow_list(self) -> None:
        environ = {"PATH": "/bin", "LC_ALL": "C", "PYTHONPATH": "/src", "TZ": "UTC",
                   "HOME": "/root", "DATABASE_URL": "x", "MY_TOKEN": "y"}  # fmt: skip
        assert child_env(environ) == {"PATH": "/bin", "LC_ALL": "C", "PYTHONPATH": "/src",
                                      "TZ": "UTC"}  # fmt: skip

    async def test_a_child_that_floods_stderr_is_killed_and_the_worker_keeps_64_kib(
        self, file: Callable[[bytes], Path]
    ) -> None:
        # It announces a page, then writes 256 MiB to stderr before it would send it
        flood = (
            "import sys\n"
            "print('{\"pages\": 1}', flush=True)\n"
            "for _ in range(256):\n"
            "    sys.stderr.buffer.write(b'x' * 1024 * 1024)\n"
            'print(\'{"page": 1, "text": "never"}\', flush=True)\n'
        )
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        parser, error = await run_stand_in(file(b"%PDF-"), flood)
        assert error.code == "parser_crashed"
        assert str(error) == "page 1: the parser wrote more than 64 KiB to stderr"
        assert parser.stderr == b"x" * STDERR_LIMIT
        assert parser.process.returncode is not None  # killed and reaped
        # The worker's peak memory did not take the flood (256 MiB) in
        growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
        assert growth_kib < 32 * 1024

    async def test_a_crash_is_reported_with_the_last_line_of_its_stderr(
        self, file: Callable[[bytes], Path]
    ) -> None:
        crash = (
            "import sys\n"
            "print('{\"pages\": 3}', flush=True)\n"
            "sys.stderr.write('Traceback (most recent call last):\\n  ...\\nValueError: boom\\n')\n"
            "sys.exit(1)\n"
        )
        _, error = await run_stand_in(file(b"%PDF-"), crash)
        assert error.code == "parser_crashed"
        assert str(error) == "page 1: the parser exited with status 1: ValueError: boom"

    async def test_pypdf_warnings_about_a_sloppy_pdf_do_not_reach_stderr(
        self, file: Callable[[bytes], Path]
    ) -> None:
        # Each page names a font object that is not there: pypdf warns about each one, and a
        # long such file would pass the stderr cap if they went there.
        numbers = itertools.count(100_000)
        sloppy = re.sub(
            rb"/F1 3 0 R",
            lambda _: b"/F1 %d 0 R" % next(numbers),
            text_pdf([f"page {i}" for i in range(12)]),
        )
        async with run_parser(file(sloppy), PDF, 1, LIMITS) as parser:
            parsed = [page async for page in parser.texts()]
        assert len(parsed) == 12
        assert parser.stderr == b""

"""The parser child: `python -m doc_worker.parser FILE ...`, run by doc_worker.child.

Parsing untrusted files is the one thing here that can eat a machine, so it runs in its own
process under limits it sets on itself before it reads a byte: an address-space limit
(RLIMIT_AS) for the whole child, and a CPU-time limit (RLIMIT_CPU) granted afresh for each
page, so a long document is never cut short while one hostile page still is. It dies with
its worker (PR_SET_PDEATHSIG), so a killed worker leaves no parser behind.

It starts with only the environment Python needs (doc_worker.child.child_env: no database
URL, no key) and writes to stderr only when it breaks: the worker keeps at most 64 KiB of its
stderr and kills it past that.

It writes JSON lines on stdout: `{"pages": N}`, then `{"page": n, "text": ...}` for each page
from `--first-page` on (1-based), then `{"done": true}`; or `{"error": {"code", "message",
"page"}}` and exit status 2. Anything else (a signal, another status) is a crash.

This module imports nothing of taskfleet: the child starts fast and small.
"""

import argparse
import contextlib
import ctypes
import gc
import io
import logging
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

PDF = "application/pdf"
# Plain text and Markdown have no pages: a form feed starts one, and a page ends at the last
# line break before this many characters.
TEXT_PAGE_CHARS = 3000
# More text than this on one page is not prose: keep the beginning.
MAX_PAGE_CHARS = 1_000_000
_PR_SET_PDEATHSIG = 1


class DocumentError(Exception):
    """The document itself is bad (not a PDF, encrypted, over pypdf's own limits)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- limits ---------------------------------------------------------------------------------


def apply_memory_limit(memory_mb: int) -> None:
    """Cap the whole child's address space at `memory_mb` MiB: past it, allocations raise
    MemoryError (reported as parser_memory_limit). No core file is written either."""
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a limit hit must not write a core file
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def grant_cpu(seconds: int) -> None:
    """Allow `seconds` more CPU time from now; past it the kernel ends us with SIGXCPU."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL us when the worker dies (Linux); elsewhere a dead parent closes our stdout."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os._exit(3)


# -- text ----------------------------------------------------------------------------------


def clean(text: str) -> str:
    """PostgreSQL text cannot hold NUL, JSON cannot hold a lone surrogate."""
    text = text[:MAX_PAGE_CHARS].replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


def split_text(text: str, size: int = TEXT_PAGE_CHARS) -> list[str]:
    """Cut `text` into pieces of at most `size` characters, at a line break (else a space)
    in the second half of the window, else hard."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > size:
        window_end = start + size
        cut = text.rfind("\n", start + size // 2, window_end)
        if cut < 0:
            cut = text.rfind(" ", start + size // 2, window_end)
        end = window_end if cut < 0 else cut + 1
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return pieces


def text_pages(data: bytes) -> list[str]:
    """Pages of a UTF-8 text or Markdown file (undecodable bytes become U+FFFD)."""
    text = data.decode("utf-8-sig", errors="replace")
    pages = [piece for part in text.split("\f") for piece in split_text(part)]
    while pages and not pages[-1].strip():  # a trailing form feed or blank tail is no page
        pages.pop()
    return pages


# -- PDF -----------------------------------------------------------------------------------


class PdfDocument:
    """pypdf, reopened every `reopen_every` pages: pypdf caches every object it resolved
    (decoded streams included), so one reader over a long file grows without bound."""

    def __init__(self, data: bytes, reopen_every: int) -> None:
        if b"%PDF-" not in data[:1024]:
            raise DocumentError("invalid_document", "not a PDF: no %PDF- header")
        self.data = data
        self.reopen_every = reopen_every
        self.reader = self._open()
        self.pages = len(self.reader.pages)

    def _open(self) -> Any:
        from pypdf import PdfReader
        from pypdf.errors import LimitReachedError

        try:
            reader = PdfReader(io.BytesIO(self.data))
            if reader.is_encrypted and not reader.decrypt(""):
                raise DocumentError("invalid_document", "the PDF is encrypted with a password")
            len(reader.pages)  # walks the page tree: a broken one fails here, not later
        except (DocumentError, MemoryError):
            raise
        except LimitReachedError as exc:
            raise DocumentError(
                "document_limit", f"the PDF exceeds a parser limit: {exc}"
            ) from None
        except RecursionError:
            raise DocumentError("document_limit", "the PDF nests objects too deeply") from None
        except Exception as exc:
            raise DocumentError("invalid_document", f"not a readable PDF: {exc}") from None
        return reader

    def texts(self, first: int) -> Iterator[tuple[int, str, str | None]]:
        """(page number, text, warning) from page `first` (1-based) to the last."""
        from pypdf.errors import LimitReachedError

        for number in range(first, self.pages + 1):
            if number != first and (number - first) % self.reopen_every == 0:
                self.reader = None
                gc.collect()
                self.reader = self._open()
            try:
                yield number, self.reader.pages[number - 1].extract_text(), None
            except MemoryError:
                raise
            except LimitReachedError as exc:
                raise DocumentError("document_limit", f"page {number}: {exc}") from None
            except RecursionError:
                raise DocumentError("document_limit", f"page {number}: nested too deeply") from None
            except Exception as exc:
                # One broken page in a real-world PDF must not lose the others: it is indexed
                # empty and reported.
                yield number, "", f"{type(exc).__name__}: {exc}"


# -- the program ---------------------------------------------------------------------------


def emit(obj: dict[str, Any]) -> None:
    """Write one JSON line and flush it: the worker reads each page as soon as it is parsed."""
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


def parse(args: argparse.Namespace, at: list[int]) -> None:
    """Write the pages; `at[0]` follows the page being parsed, for the error message."""
    data = Path(args.file).read_bytes()
    if args.media_type == PDF:
        pdf = PdfDocument(data, args.reopen_every)
        emit({"pages": pdf.pages})
        texts: Iterator[tuple[int, str, str | None]] = pdf.texts(args.first_page)
    else:
        pages = text_pages(data)
        del data
        emit({"pages": len(pages)})
        texts = ((n, pages[n - 1], None) for n in range(args.first_page, len(pages) + 1))
    at[0] = args.first_page
    for number, text, warning in texts:
        if args.page_delay_ms:
            time.sleep(args.page_delay_ms / 1000)
        line: dict[str, Any] = {"page": number, "text": clean(text)}
        if warning is not None:
            line["warning"] = warning[:500]
        emit(line)
        grant_cpu(args.cpu_s)
        at[0] = number + 1
    emit({"done": True})


def main(argv: list[str] | None = None) -> int:
    """The parser child's program: parse the file under its limits. Exit status: 0 done, 2 an
    error it reported on stdout, 3 the worker is gone."""
    parser = argparse.ArgumentParser(prog="doc_worker.parser")
    parser.add_argument("file")
    parser.add_argument("--media-type", required=True)
    parser.add_argument("--first-page", type=int, default=1)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, required=True)
    parser.add_argument("--reopen-every", type=int, default=10)
    parser.add_argument("--page-delay-ms", type=int, default=0)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    # pypdf logs a warning per broken object of a malformed file, to stderr (Python's last
    # resort handler): a long sloppy PDF would pass the worker's cap on stderr and fail. A
    # page it cannot read is reported in its own line; the rest is noise.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    apply_memory_limit(args.memory_mb)
    grant_cpu(args.cpu_s)

    at = [0]
    code, message = "", ""
    try:
        parse(args, at)
    except DocumentError as exc:
        code, message = exc.code, str(exc)
    except MemoryError:
        # Only constants here: the frames that hold the memory are still alive until the
        # except clause ends.
        code = "parser_memory_limit"
    except BrokenPipeError:
        return 3  # the worker is gone
    if not code:
        return 0
    gc.collect()
    if code == "parser_memory_limit":
        where = f"page {at[0]}" if at[0] else "opening the document"
        message = f"{where}: the parser went over its memory limit of {args.memory_mb} MiB"
    emit({"error": {"code": code, "message": message, "page": at[0] or None}})
    return 2


if __name__ == "__main__":
    sys.exit(main())

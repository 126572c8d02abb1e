"""Reading a document upload (multipart/form-data): its `file` and optional `title`.

The upload is streamed and counted against DOCUMENT_MAX_BYTES (the app's 1 MiB body limit is
for JSON routes; aiohttp applies it to whole-body reads only), and its type is decided by its
bytes, never by what the client claims. It goes through a spool (memory, then a temporary
file) a chunk at a time, never whole in memory.
"""

import codecs
import hashlib
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from fleet_api.document_models import UploadFields
from fleet_api.errors import ApiError
from fleet_api.spool import Spool
from taskfleet.data import documents

CHUNK = 64 * 1024
# What tells a PDF (its header may follow a little junk, as readers allow).
SNIFF_BYTES = 1024
# Boundaries and part headers around the file: the Content-Length precheck allows this much.
MULTIPART_SLACK = 64 * 1024
# The text fields and their bounds: a 300-character title of 4-byte characters, and a
# metadata object of 3,840 characters (fleet_api.submitting), each with room to spare.
FIELD_MAX_BYTES = {"title": 2048, "metadata": 16384}
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd")
MARKDOWN_TYPES = ("text/markdown", "text/x-markdown")


@dataclass
class FilePart:
    head: bytes  # the first SNIFF_BYTES; the whole file is in the caller's spool
    size: int
    sha256: str
    filename: str | None
    declared_type: str | None  # what the client claims: only tells Markdown from plain text
    is_text: bool


@dataclass
class Upload:
    size: int
    sha256: str
    media_type: str
    filename: str | None
    title: str | None
    metadata: str | None  # JSON text, checked by the route (fleet_api.submitting)


class TextProbe:
    """Fed the file as it streams: is it UTF-8 text (no NUL, every sequence complete)?"""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.ok = True

    def feed(self, chunk: bytes, *, final: bool = False) -> None:
        """Check the next chunk. `final` on the last call: a sequence still incomplete then
        makes the file not text."""
        if not self.ok:
            return
        if b"\x00" in chunk:
            self.ok = False
            return
        try:
            self._decoder.decode(chunk, final=final)
        except UnicodeDecodeError:
            self.ok = False


def sniff(head: bytes, is_text: bool, filename: str | None, declared: str | None) -> str | None:
    """PDF by its header; text by its bytes (UTF-8), Markdown when also named or declared so."""
    if b"%PDF-" in head[:SNIFF_BYTES]:
        return documents.PDF
    if not is_text:
        return None
    name = (filename or "").lower()
    if name.endswith(MARKDOWN_SUFFIXES) or (declared or "").split(";")[0] in MARKDOWN_TYPES:
        return documents.MARKDOWN
    return documents.TEXT


def too_large(limit: int) -> ApiError:
    """The 413 for a document over `limit` bytes; its details carry the limit."""
    return ApiError(
        413, "too_large", f"a document may be at most {limit} bytes", {"max_bytes": limit}
    )


async def read_upload(request: web.Request, limit: int, spool: Spool) -> Upload:
    """The form's fields; the file's bytes go to `spool` as they arrive."""
    if request.content_type != "multipart/form-data":
        raise ApiError(
            415, "unsupported_media_type", "send multipart/form-data with a `file` field"
        )
    if request.content_length is not None and request.content_length > limit + MULTIPART_SLACK:
        raise too_large(limit)
    try:
        fields, file = await _read_parts(request, limit, spool)
    except (ValueError, HttpProcessingError) as exc:  # aiohttp: a malformed multipart body
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ApiError(400, "bad_multipart", f"malformed multipart body: {reason}") from None
    if file is None:
        raise ApiError(
            422,
            "invalid_request",
            "the `file` field is required",
            [{"loc": ["body", "file"], "msg": "Field required"}],
        )
    if not file.size:
        raise ApiError(422, "empty_file", "the file is empty")
    media_type = sniff(file.head, file.is_text, file.filename, file.declared_type)
    if media_type is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "a document must be a PDF or UTF-8 plain text or Markdown",
            {"supported": list(documents.MEDIA_TYPES)},
        )
    try:
        form = UploadFields.model_validate(fields)
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_context=False, include_input=False)
        raise ApiError(
            422, "invalid_request", "form fields do not fit the schema", details
        ) from None
    return Upload(
        file.size, file.sha256, media_type, file.filename, _printable(form.title), form.metadata
    )


async def _read_parts(
    request: web.Request, limit: int, spool: Spool
) -> tuple[dict[str, str], FilePart | None]:
    """The form's text fields, and its file (streamed to `spool`) if it had one."""
    fields: dict[str, str] = {}
    file: FilePart | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(422, "invalid_request", "nested multipart is not supported")
        if part.name == "file" and file is None:
            file = await _read_file(part, limit, spool)
        elif part.name in FIELD_MAX_BYTES and part.name not in fields:
            fields[part.name] = await _read_field(part, FIELD_MAX_BYTES[part.name])
        else:
            where = [{"loc": ["body", part.name], "msg": "unexpected or repeated"}]
            raise ApiError(422, "invalid_request", f"unexpected form field {part.name!r}", where)
    return fields, file


async def _read_file(part: BodyPartReader, limit: int, spool: Spool) -> FilePart:
    head, digest, probe = b"", hashlib.sha256(), TextProbe()
    while chunk := await part.read_chunk(CHUNK):
        if spool.size + len(chunk) > limit:
            raise too_large(limit)
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
        probe.feed(chunk)
        await spool.write(chunk)
    probe.feed(b"", final=True)
    return FilePart(
        head,
        spool.size,
        digest.hexdigest(),
        _clean_filename(part.filename),
        part.headers.get("Content-Type"),
        probe.ok,
    )


async def _read_field(part: BodyPartReader, limit: int) -> str:
    raw = bytearray()
    while chunk := await part.read_chunk(limit):
        raw += chunk
        if len(raw) > limit:
            raise ApiError(422, "invalid_request", f"form field {part.name!r} is too long")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_request", f"form field {part.name!r} is not UTF-8") from None


def _printable(text: str | None, limit: int = 300) -> str | None:
    """Printable characters only (PostgreSQL text cannot even hold NUL), trimmed; None if
    nothing is left."""
    kept = "".join(c for c in text or "" if c.isprintable()).strip()[:limit]
    return kept or None


def _clean_filename(name: str | None) -> str | None:
    """The last path component, printable, at most 255 characters: it is only shown.
    Percent-escapes are undone first (aiohttp and some browsers quote the name)."""
    if not name:
        return None
    return _printable(unquote(name).replace("\\", "/").rsplit("/", 1)[-1], 255)

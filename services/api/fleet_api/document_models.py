"""The bodies of the document routes (DESIGN.md §7): their query strings, the upload's form
fields and what they answer; the OpenAPI document is built from these same models."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from taskfleet.client.models import Delay, WithCallback
from taskfleet.core.messages import ID_PATTERN
from taskfleet.data import documents

# `file` is declared as text that any client can send and we accept; the full rule (a PDF,
# or UTF-8 text, read from the bytes) cannot be a JSON schema, so it is the description.
# (As `format: binary`, a schema-driven client would send arbitrary bytes, rightly 415.)
UPLOAD_FORM = {
    "type": "object",
    "required": ["file"],
    "additionalProperties": False,  # any other field is 422, as `extra` in a JSON body
    "properties": {
        "file": {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]+$",
                 "description": "The document: a PDF, or UTF-8 plain text or Markdown. Its"
                 " type is read from its bytes; the part's Content-Type (or a .md name)"
                 " only tells Markdown from plain text."},
        "title": {"type": "string", "maxLength": 300},
        "metadata": {"type": "string", "description": "The task's metadata: a JSON object"
                     " of at most 16 string values of up to 200 characters."},
    },
}  # fmt: skip


class OwnerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class UploadQuery(OwnerQuery, Delay, WithCallback):
    """The upload's query string: for whom, and when to process it (docs/scheduling.md)."""


class ListQuery(OwnerQuery):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(
        None,
        pattern=documents.CURSOR_PATTERN,
        description="The `next_cursor` of the previous page.",
    )


class SearchQuery(OwnerQuery):
    # Optional like every query parameter of the spec: no words, no results.
    q: str = Field(
        "",
        max_length=documents.MAX_QUERY_CHARS,
        description='Words, "a phrase", -excluded, or: web-search syntax.',
    )
    limit: int = Field(10, ge=1, le=50)


class UploadFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=300, description="Blank: the file's name.")
    metadata: str | None = Field(None, description="A JSON object: the task's metadata.")


class DocumentTask(BaseModel):
    id: UUID
    status: str
    progress: float
    stage: str | None
    status_message: str | None = Field(description="e.g. `page 7 of 40`.")
    error: dict[str, Any] | None
    attempts: int
    max_attempts: int


class Document(BaseModel):
    id: UUID
    user_id: str
    title: str
    filename: str | None
    media_type: Literal["application/pdf", "text/plain", "text/markdown"]
    size_bytes: int
    sha256: str
    status: Literal["scheduled", "queued", "processing", "indexed", "failed", "cancelled"] = Field(
        description="Searchable once `indexed`."
    )
    pages: int | None = Field(description="Known once parsing started.")
    chunks: int = Field(description="Chunks indexed so far.")
    task_id: UUID | None
    task: DocumentTask | None = Field(description="null once retention deleted the task.")
    created_at: datetime
    indexed_at: datetime | None


class DocumentList(BaseModel):
    documents: list[Document] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class SearchResult(BaseModel):
    document_id: UUID
    title: str
    page: int = Field(description="1-based page of the document.")
    chunk_index: int
    snippet: str = Field(description="The matching words are marked **like this**.")
    score: float = Field(description="ts_rank_cd: higher is better; compare within one query.")


class SearchResults(BaseModel):
    query: str
    results: list[SearchResult] = Field(description="Best first.")

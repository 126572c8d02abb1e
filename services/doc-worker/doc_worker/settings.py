"""doc-worker's own settings: the kernel's and the parser's (docs/documents.md)."""

from pydantic import Field

from taskfleet.core.settings import Settings


class DocWorkerSettings(Settings):
    doc_batch_pages: int = Field(10, ge=1, le=1000, validation_alias="DOC_BATCH_PAGES")
    """Pages per checkpoint: a redelivered task resumes after the last whole batch."""

    doc_parse_memory_mb: int = Field(512, ge=128, validation_alias="DOC_PARSE_MEMORY_MB")
    """The parser child's address space, for the whole child."""

    doc_parse_cpu_s: int = Field(30, ge=1, validation_alias="DOC_PARSE_CPU_S")
    """The parser child's CPU time per page."""

    doc_parse_timeout_s: float = Field(60.0, gt=0, validation_alias="DOC_PARSE_TIMEOUT_S")
    """The parser child's wall time per page."""

    doc_page_delay_ms: int = Field(0, ge=0, le=60_000, validation_alias="DOC_PAGE_DELAY_MS")
    """Makes the parser sleep this long per page: demos and the crash-resume tests only."""

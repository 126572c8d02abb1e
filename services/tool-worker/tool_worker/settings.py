"""tool-worker's own settings: the kernel's and its tools'."""

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from taskfleet.core.settings import Settings


class ToolWorkerSettings(Settings):
    smtp_url: str = Field("smtp://127.0.0.1:25", pattern=r"^smtps?://", validation_alias="SMTP_URL")
    """The mail server of the send_email tool (`smtp://` or `smtps://`)."""

    smtp_from: str = Field("taskfleet@localhost", min_length=3, validation_alias="SMTP_FROM")
    """The sender of the send_email tool's mail."""

    http_get_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="HTTP_GET_ALLOWED_HOSTS"
    )
    """Hosts the http_get tool may fetch, comma-separated (`example.com,api.example.org`); empty:
    none."""

    http_get_max_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, validation_alias="HTTP_GET_MAX_BYTES"
    )
    """The most of a page http_get reads."""

    http_get_timeout_s: float = Field(10.0, gt=0, validation_alias="HTTP_GET_TIMEOUT_S")
    """Timeout of one http_get fetch."""

    notification_lease_s: float = Field(60, ge=1, le=3600, validation_alias="NOTIFICATION_LEASE_S")
    """How long an email notification may take to send: one claimed longer ago lost its sender
    mid-send, and is failed rather than sent again (it may have gone)."""

    @field_validator("http_get_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

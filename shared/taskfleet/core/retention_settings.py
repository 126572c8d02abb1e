"""The settings of retention (`taskfleet cleanup` and the API's periodic job,
taskfleet.data.retention). `Settings` inherits them; they are apart only to keep settings.py
short.
"""

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskfleet.core.durations import parse_duration


class RetentionSettings(BaseSettings):
    """What retention deletes, how often, and how fast."""

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    retention_older_than_s: float = Field(
        30 * 86400.0, gt=0, validation_alias="RETENTION_OLDER_THAN"
    )
    """Retention: `taskfleet cleanup` and the API's job delete terminal tasks that finished longer
    ago (`30d`, `12h`, `90m` or seconds), with what hangs off them."""

    retention_interval_s: float = Field(3600.0, ge=0, validation_alias="RETENTION_INTERVAL_S")
    """How often the retention job runs, in one API replica; 0: off."""

    retention_batch_size: int = Field(
        500, ge=1, le=100_000, validation_alias="RETENTION_BATCH_SIZE"
    )
    """Tasks retention deletes in one transaction (with their messages and the rest that hangs
    off them)."""

    retention_pause_ratio: float = Field(
        3.0, ge=0, le=100, validation_alias="RETENTION_PAUSE_RATIO"
    )
    """After each batch, retention pauses this many times as long as the batch took: 3 keeps it to
    a quarter of the time of one PostgreSQL backend, so that a large backlog's cleanup does not
    take the live work's share (docs/benchmarks.md, "Cost as the history grows"); 0 deletes
    batch after batch."""

    @field_validator("retention_older_than_s", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

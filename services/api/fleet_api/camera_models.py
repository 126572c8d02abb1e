"""The camera routes' bodies and the limits they check (fleet_api.cameras holds the routes)."""

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from taskfleet.client.models import Delay, WithCallback
from taskfleet.core.messages import ID_PATTERN

CHUNK = 64 * 1024
MAX_URL_CHARS = 2048
# http(s), a host, then printable ASCII: anything else is refused here, not at capture time.
URL_PATTERN = r"^https?://[A-Za-z0-9._~%!$&'()*+,;=:@\[\]-]+([/?#][!-~]*)?$"
# Identified by their first bytes, never by the Content-Type a client claims.
MAGIC = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}

CAMERA_COLUMNS = (
    "camera_id, user_id, snapshot_url, interval_s, enabled, motion_threshold, next_capture_at,"
    " created_at, updated_at"
)


class CameraSettings(BaseModel):
    """`PUT /api/cameras/{camera_id}`: the whole configuration of periodic capture."""

    # "enabled needs a snapshot_url", said in the schema too, so that it tells the whole truth.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"enabled": {"const": True}}},
            "then": {
                "required": ["snapshot_url"],
                "properties": {"snapshot_url": {"type": "string"}},
            },
        },
    )

    snapshot_url: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        pattern=URL_PATTERN,
        description="Absolute http(s) URL answering a JPEG or PNG.",
    )
    interval_s: int = Field(60, ge=1, le=86400, description="Seconds between two captures.")
    enabled: bool = Field(True, description="Capture periodically (needs snapshot_url).")
    motion_threshold: float | None = Field(
        None, ge=0, le=1, description="Fraction of the frame that must change to be motion."
    )

    @model_validator(mode="after")
    def _enabled_needs_url(self) -> "CameraSettings":
        if self.enabled and self.snapshot_url is None:
            raise ValueError("enabled needs a snapshot_url")
        return self


class OwnerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=ID_PATTERN, description="Service scope only.")


class FrameQuery(OwnerQuery, Delay, WithCallback):
    """The frame upload's query string: for whom, and when to analyse it (docs/scheduling.md)."""


class AnalysesQuery(OwnerQuery):
    limit: int = Field(20, ge=1, le=100)


class Camera(BaseModel):
    camera_id: str
    user_id: str
    snapshot_url: str | None
    interval_s: int
    enabled: bool
    motion_threshold: float | None = Field(description="null: the CAMERA_MOTION_THRESHOLD.")
    next_capture_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Analysis(BaseModel):
    frame_id: UUID
    task_id: UUID
    source: str = Field(description="`upload` or `capture`.")
    slot_at: datetime | None = Field(description="The capture slot of a captured frame.")
    received_at: datetime
    analysed_at: datetime
    width: int
    height: int
    format: str
    brightness: float = Field(description="Mean grey level, 0 (black) to 1 (white).")
    sharpness: float = Field(description="Variance of the Laplacian; higher is sharper.")
    motion: float | None = Field(
        description="Fraction of the frame changed since the previous analysed frame."
    )
    motion_detected: bool
    previous_frame_id: UUID | None
    thumbnail: str = Field(description="A small JPEG as a data: URL.")


class AnalysisPage(BaseModel):
    camera_id: str
    analyses: list[Analysis] = Field(description="Newest frame first.")

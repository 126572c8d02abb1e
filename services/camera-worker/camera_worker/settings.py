"""camera-worker's own settings: the kernel's and analysis and capture's (docs/cameras.md)."""

from pydantic import Field

from taskfleet.core.settings import Settings


class CameraWorkerSettings(Settings):
    camera_max_pixels: int = Field(25_000_000, ge=1, validation_alias="CAMERA_MAX_PIXELS")
    """Above this many pixels an image is a decompression bomb: refused before it is decoded."""

    camera_thumbnail_px: int = Field(160, ge=16, le=1024, validation_alias="CAMERA_THUMBNAIL_PX")
    """The longest side of a frame's thumbnail."""

    camera_motion_threshold: float = Field(
        0.02, ge=0, le=1, validation_alias="CAMERA_MOTION_THRESHOLD"
    )
    """The share of changed pixels that is motion, for cameras that set none of their own."""

    camera_capture_timeout_s: float = Field(10.0, gt=0, validation_alias="CAMERA_CAPTURE_TIMEOUT_S")
    """How long one snapshot capture may take."""

    camera_capture_max_attempts: int = Field(
        1, ge=1, le=10, validation_alias="CAMERA_CAPTURE_MAX_ATTEMPTS"
    )
    """Attempts of a capture. It belongs to its time slot: the next slot is its retry, so one by
    default."""

    camera_scheduler_tick_s: float = Field(
        0.25, gt=0, le=0.5, validation_alias="CAMERA_SCHEDULER_TICK_S"
    )
    """How often the scheduler looks for due captures: at most half the shortest interval (1 s), so
    that a living scheduler never skips a slot."""

    camera_lock_retry_s: float = Field(1.0, gt=0, le=30, validation_alias="CAMERA_LOCK_RETRY_S")
    """How often a standby replica tries to take the scheduler lock (bounds the takeover time)."""

"""What a camera task is: get the frame (stored upload or live capture), analyse it, store the
analysis, and announce motion on the events exchange."""

import asyncio
from datetime import UTC, datetime

import orjson
import structlog

from camera_worker.analysis import analyse
from camera_worker.capture import fetch_snapshot
from camera_worker.frames import Frame, FrameStore, SavedAnalysis
from camera_worker.settings import CameraWorkerSettings
from taskfleet.handler import CameraPayload, Kernel, PermanentError, TaskContext, TaskResult

log = structlog.get_logger("camera_worker")

MOTION_EVENT = "camera.motion"


async def handle_frame(ctx: TaskContext[CameraPayload], *, kernel: Kernel) -> TaskResult:
    """Analyse one frame. A bad image fails at once; a camera that does not answer is retryable
    (captures get CAMERA_CAPTURE_MAX_ATTEMPTS, one by default: the next slot is the retry)."""
    settings, frames = CameraWorkerSettings.of(kernel.settings), FrameStore(ctx.db)
    frame = await frames.load(ctx.payload.frame_id, ctx.user_id, ctx.task_id)
    if frame is None:
        raise PermanentError("no such frame for this task and user", code="frame_not_found")
    done = await frames.summary(frame.id)
    if done is not None:  # an earlier attempt stored it and then lost its worker
        return TaskResult(output=done)
    data = await _frame_bytes(ctx, frame, settings)
    await ctx.progress(0.4, "analysing")
    # Decoding and numpy are CPU work: a thread keeps this loop (and its heartbeats) responsive.
    analysis = await asyncio.to_thread(
        analyse,
        data,
        max_pixels=settings.camera_max_pixels,
        thumbnail_px=settings.camera_thumbnail_px,
    )
    await ctx.progress(0.8, "saving")
    saved = await frames.save(frame, analysis, default_threshold=settings.camera_motion_threshold)
    if saved.inserted and saved.motion_detected:
        await _announce_motion(kernel, ctx, frame, saved)
    return TaskResult(output=saved.summary)


async def _frame_bytes(ctx: TaskContext, frame: Frame, settings: CameraWorkerSettings) -> bytes:
    if frame.image is not None:
        return frame.image
    if frame.source != "capture":
        raise PermanentError("the uploaded frame's image is gone", code="frame_not_found")
    if not frame.snapshot_url:
        raise PermanentError("the camera has no snapshot_url any more", code="camera_refused")
    await ctx.progress(0.1, "capturing")
    return await fetch_snapshot(
        frame.snapshot_url,
        timeout_s=settings.camera_capture_timeout_s,
        max_bytes=settings.camera_max_frame_bytes,
    )


async def _announce_motion(
    kernel: Kernel, ctx: TaskContext, frame: Frame, saved: SavedAnalysis
) -> None:
    event = {
        "type": MOTION_EVENT, "user_id": frame.user_id, "camera_id": frame.camera_id,
        "frame_id": str(frame.id), "task_id": str(ctx.task_id), "source": frame.source,
        "motion": saved.summary["motion"], "threshold": saved.threshold,
        "at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    log.info("camera_motion", camera_id=frame.camera_id, motion=saved.summary["motion"])
    await kernel.broker.publish_event(MOTION_EVENT, orjson.dumps(event))

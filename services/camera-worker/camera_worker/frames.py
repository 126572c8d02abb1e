"""The camera-worker's reads and writes of frames and analyses (migrations/0004_cameras.sql)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from camera_worker.analysis import FrameAnalysis, motion_score
from taskfleet.store.tenancy import Db


@dataclass(frozen=True, slots=True)
class Frame:
    id: UUID
    seq: int
    user_id: str
    camera_id: str
    task_id: UUID
    source: str
    slot_at: datetime | None
    image: bytes | None
    snapshot_url: str | None
    motion_threshold: float | None


@dataclass(frozen=True, slots=True)
class SavedAnalysis:
    summary: dict[str, Any]
    threshold: float
    inserted: bool  # False: an earlier attempt had saved it (nothing new to announce)

    @property
    def motion_detected(self) -> bool:
        """Whether more of the frame changed than the threshold (never on a camera's first one)."""
        return bool(self.summary["motion_detected"])


SUMMARY_COLUMNS = (
    "frame_id, camera_id, width, height, format, brightness, sharpness, motion,"
    " motion_detected, previous_frame_id"
)


class FrameStore:
    def __init__(self, pool: Db) -> None:
        self.pool = pool  # a task's user's statements (TaskContext.db)

    async def load(self, frame_id: UUID, user_id: str, task_id: UUID) -> Frame | None:
        """The frame of this task, owned by the task's user (the message is untrusted)."""
        row = await self.pool.fetchrow(
            "SELECT f.id, f.seq, f.user_id, f.camera_id, f.task_id, f.source, f.slot_at,"
            " f.image, c.snapshot_url, c.motion_threshold"
            " FROM camera_frames f JOIN cameras c USING (user_id, camera_id)"
            " WHERE f.id = $1 AND f.user_id = $2 AND f.task_id = $3",
            frame_id,
            user_id,
            task_id,
        )
        return Frame(**dict(row)) if row is not None else None

    async def summary(self, frame_id: UUID) -> dict[str, Any] | None:
        """The analysis an earlier attempt stored for this frame, or None if none has yet."""
        row = await self.pool.fetchrow(
            f"SELECT {SUMMARY_COLUMNS} FROM camera_analyses WHERE frame_id = $1", frame_id
        )
        return _summary(row) if row is not None else None

    async def save(
        self, frame: Frame, analysis: FrameAnalysis, *, default_threshold: float
    ) -> SavedAnalysis:
        """Measure motion against the camera's previous analysed frame and store the analysis.

        The camera row is locked for the transaction, so the analyses of one camera are
        written one at a time and each compares against the latest one before its frame.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            threshold = await conn.fetchval(
                "SELECT coalesce(motion_threshold, $3) FROM cameras"
                " WHERE user_id = $1 AND camera_id = $2 FOR UPDATE",
                frame.user_id,
                frame.camera_id,
                default_threshold,
            )
            previous = await conn.fetchrow(
                "SELECT frame_id, signature FROM camera_analyses"
                " WHERE user_id = $1 AND camera_id = $2 AND frame_seq < $3"
                " ORDER BY frame_seq DESC LIMIT 1",
                frame.user_id,
                frame.camera_id,
                frame.seq,
            )
            motion = None
            if previous is not None:
                motion = motion_score(previous["signature"], analysis.signature)
            detected = motion is not None and motion > threshold
            row = await conn.fetchrow(
                "INSERT INTO camera_analyses (frame_id, task_id, user_id, camera_id, frame_seq,"
                " width, height, format, brightness, sharpness, motion, motion_detected,"
                " previous_frame_id, signature, thumbnail)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                f" ON CONFLICT (frame_id) DO NOTHING RETURNING {SUMMARY_COLUMNS}",
                frame.id,
                frame.task_id,
                frame.user_id,
                frame.camera_id,
                frame.seq,
                analysis.width,
                analysis.height,
                analysis.format,
                analysis.brightness,
                analysis.sharpness,
                motion,
                detected,
                previous["frame_id"] if previous is not None else None,
                analysis.signature,
                analysis.thumbnail,
            )
            inserted = row is not None
            if row is None:  # a stale attempt of this task got here first: keep its answer
                row = await conn.fetchrow(
                    f"SELECT {SUMMARY_COLUMNS} FROM camera_analyses WHERE frame_id = $1", frame.id
                )
            # Once analysed, only the figures and the thumbnail are kept, not the whole frame.
            await conn.execute("UPDATE camera_frames SET image = NULL WHERE id = $1", frame.id)
        return SavedAnalysis(_summary(row), float(threshold), inserted)


def _summary(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    for key in ("frame_id", "previous_frame_id"):
        out[key] = str(out[key]) if out[key] is not None else None
    return out

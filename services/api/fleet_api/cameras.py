"""Camera routes (DESIGN.md §7): upload a frame, configure periodic capture, read analyses.

A camera belongs to a user: (user_id, camera_id) is its identity, and every query filters by
the caller's user, so another user's camera answers 404 as if absent. A service token may act
for any user with `?user_id=`.
"""

import base64
import hashlib
from typing import Any
from uuid import uuid4

import asyncpg
from aiohttp import web

from fleet_api.auth import acting_for, principal
from fleet_api.camera_models import (
    CAMERA_COLUMNS,
    CHUNK,
    MAGIC,
    AnalysesQuery,
    Analysis,
    AnalysisPage,
    Camera,
    CameraSettings,
    FrameQuery,
    OwnerQuery,
)
from fleet_api.delays import due_at
from fleet_api.errors import ApiError, json_response, not_found
from fleet_api.openapi import Operation
from fleet_api.routes import (
    KERNEL,
    OPENAPI,
    PUBLISHER,
    SETTINGS,
    create_in,
    enforce_quota,
    parse_body,
    parse_query,
    user_db,
)
from fleet_api.submitting import (
    accepted,
    accepted_body,
    callback_answer,
    callback_digest,
    callback_for,
    check_repeat,
    how_to_check_after_loss,
    idempotency_key,
    priority_of,
    query_metadata,
    repeat_callback,
    request_digest,
)
from taskfleet.broker.publisher import new_task
from taskfleet.client.models import FrameAccepted
from taskfleet.core.constants import TaskType
from taskfleet.store.records import Existing, Outgoing


def camera_id_param(request: web.Request) -> str:
    """Checked against ID_PATTERN before the handler ran (fleet_api.openapi: 422 if not)."""
    return request.match_info["camera_id"]


def owner(request: web.Request, query: OwnerQuery, *, reading: bool) -> str:
    """The user the request acts for (fleet_api.auth.acting_for): another user's camera
    reads as absent (404); writing for another user is 403."""
    return acting_for(request, query.user_id, reading=reading, what="camera")


async def read_frame(request: web.Request, limit: int) -> tuple[bytearray, str]:
    """The body, at most `limit` bytes (413 beyond), and its type by magic bytes (415)."""
    too_large = ApiError(413, "too_large", f"a frame may be at most {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    # Streamed with our own limit: request.read() stops at the app's 1 MiB client_max_size.
    body = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            raise too_large
    for magic, content_type in MAGIC.items():
        if body.startswith(magic):
            return body, content_type  # asyncpg sends a bytearray as is: no copy
    raise ApiError(415, "unsupported_media_type", "the body must be a JPEG or PNG image")


async def upload_frame(request: web.Request) -> web.Response:
    """Accept a frame: 202 with its id and task id; the analysis goes on in camera-worker."""
    kernel, key = request.app[KERNEL], idempotency_key(request)
    camera_id = camera_id_param(request)
    query = parse_query(request, FrameQuery, metadata=True)
    user_id, metadata = owner(request, query, reading=False), query_metadata(request)
    due = due_at(query, request.app[SETTINGS].max_delay_s)
    await enforce_quota(request, user_id)
    image, content_type = await read_frame(request, kernel.settings.camera_max_frame_bytes)
    frame_id = uuid4()
    digest = request_digest(
        "frame", camera_id=camera_id, sha256=hashlib.sha256(image).hexdigest(), metadata=metadata,
        run_at=query.run_at, delay_s=query.delay_s, **callback_digest(query.callback_url),
    )  # fmt: skip
    callback = await callback_for(request.app[SETTINGS], kernel.keyring, query.callback_url)
    # The message carries ids only; the image waits in PostgreSQL, where the worker reads it.
    new = new_task(
        kernel.settings, type=TaskType.CAMERA, user_id=user_id,
        input={"frame_id": str(frame_id), "camera_id": camera_id}, idempotency_key=key,
        metadata=metadata, request_digest=digest if key is not None else None, run_at=due,
        priority=priority_of(request.app[SETTINGS], principal(request), query.priority),
        callback=callback[0] if callback else None,
    )  # fmt: skip

    async def write(conn: asyncpg.Connection) -> Outgoing | Existing:
        # Sending frames is enough to have a camera; PUT adds periodic capture to it.
        await conn.execute(
            "INSERT INTO cameras (user_id, camera_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            user_id,
            camera_id,
        )
        outgoing = await kernel.store.insert_task(
            conn, new, relay_grace_s=kernel.settings.outbox_grace_s
        )
        if outgoing is None:  # the key's task exists: its frame, not a second one
            assert key is not None
            return await kernel.store.existing(conn, user_id, key)
        await conn.execute(
            "INSERT INTO camera_frames (id, user_id, camera_id, task_id, source, content_type,"
            " image) VALUES ($1, $2, $3, $4, 'upload', $5, $6)",
            frame_id,
            user_id,
            camera_id,
            new.task_id,
            content_type,
            image,
        )
        return outgoing

    db = user_db(request, user_id)
    written = await create_in(
        db, write, how_to_check_after_loss(key, f"GET /api/cameras/{camera_id}/analyses")
    )
    if isinstance(written, Existing):
        check_repeat(written.request_digest, digest)
        answer = FrameAccepted(
            frame_id=written.input["frame_id"], task_id=written.task_id, status=written.status,
            **await repeat_callback(db, kernel.keyring, task_id=written.task_id),
        )  # fmt: skip
        return accepted(accepted_body(answer), written.task_id)
    # A delayed task's message goes out from the outbox when it is due.
    if due is None:
        await request.app[PUBLISHER].send(written)
    answer = FrameAccepted(
        frame_id=frame_id, task_id=new.task_id, status=new.status, **callback_answer(callback)
    )
    return accepted(accepted_body(answer), new.task_id)


async def put_camera(request: web.Request) -> web.Response:
    """Configure periodic capture. A changed schedule starts at once; an unchanged one keeps
    its slots (repeating the same PUT neither skips nor doubles a capture)."""
    camera_id = camera_id_param(request)
    user_id = owner(request, parse_query(request, OwnerQuery), reading=False)
    body = await parse_body(request, CameraSettings)
    row = await user_db(request, user_id).fetchrow(
        "INSERT INTO cameras AS c (user_id, camera_id, snapshot_url, interval_s, enabled,"
        " motion_threshold, next_capture_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $5 THEN now() END)"
        " ON CONFLICT (user_id, camera_id) DO UPDATE SET snapshot_url = excluded.snapshot_url,"
        "  interval_s = excluded.interval_s, enabled = excluded.enabled,"
        "  motion_threshold = excluded.motion_threshold, updated_at = now(),"
        "  next_capture_at = CASE"
        "   WHEN NOT excluded.enabled THEN NULL"
        "   WHEN c.enabled AND c.snapshot_url = excluded.snapshot_url"
        "    AND c.interval_s = excluded.interval_s THEN c.next_capture_at"
        "   ELSE now() END"
        f" RETURNING {CAMERA_COLUMNS}",
        user_id,
        camera_id,
        body.snapshot_url,
        body.interval_s,
        body.enabled,
        body.motion_threshold,
    )
    return json_response(Camera.model_validate(dict(row)).model_dump(mode="json"))


async def get_camera(request: web.Request) -> web.Response:
    """The camera's capture settings; 404 if it is absent or another user's."""
    camera_id = camera_id_param(request)
    user_id = owner(request, parse_query(request, OwnerQuery), reading=True)
    row = await user_db(request, user_id).fetchrow(
        f"SELECT {CAMERA_COLUMNS} FROM cameras WHERE user_id = $1 AND camera_id = $2",
        user_id,
        camera_id,
    )
    if row is None:
        raise not_found("camera not found")
    return json_response(Camera.model_validate(dict(row)).model_dump(mode="json"))


async def list_analyses(request: web.Request) -> web.Response:
    """The camera's analyses, newest frame first, each with its thumbnail as a data URL."""
    camera_id = camera_id_param(request)
    query = parse_query(request, AnalysesQuery)
    user_id = owner(request, query, reading=True)
    async with user_db(request, user_id).acquire() as conn:
        exists = await conn.fetchval(
            "SELECT 1 FROM cameras WHERE user_id = $1 AND camera_id = $2", user_id, camera_id
        )
        if not exists:
            raise not_found("camera not found")
        rows = await conn.fetch(
            "SELECT a.frame_id, a.task_id, f.source, f.slot_at, f.created_at AS received_at,"
            " a.analysed_at, a.width, a.height, a.format, a.brightness, a.sharpness, a.motion,"
            " a.motion_detected, a.previous_frame_id, a.thumbnail"
            " FROM camera_analyses a JOIN camera_frames f ON f.id = a.frame_id"
            " WHERE a.user_id = $1 AND a.camera_id = $2 ORDER BY a.frame_seq DESC LIMIT $3",
            user_id,
            camera_id,
            query.limit,
        )
    page = AnalysisPage(camera_id=camera_id, analyses=[_analysis(r) for r in rows])
    return json_response(page.model_dump(mode="json"))


def _analysis(row: Any) -> Analysis:
    out = dict(row)
    out["thumbnail"] = "data:image/jpeg;base64," + base64.b64encode(out["thumbnail"]).decode()
    return Analysis.model_validate(out)


def add_camera_routes(app: web.Application) -> None:
    """Declare the camera routes."""
    api, tags = app[OPENAPI], ("cameras",)
    image = {"type": "string", "format": "binary"}
    api.add(
        app,
        Operation(
            "POST",
            "/api/cameras/{camera_id}/frames",
            upload_frame,
            "Upload a frame (JPEG or PNG body) for analysis",
            FrameAccepted,
            202,
            query=FrameQuery,
            errors=(400, 401, 403, 409, 413, 415, 422, 429, 503),
            tags=tags,
            raw_body={"image/jpeg": image, "image/png": image},
            idempotent=True,
        ),
    )
    api.add(
        app,
        Operation(
            "PUT",
            "/api/cameras/{camera_id}",
            put_camera,
            "Configure periodic capture",
            Camera,
            body=CameraSettings,
            query=OwnerQuery,
            errors=(400, 401, 403, 413, 422, 503),
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/cameras/{camera_id}",
            get_camera,
            "A camera",
            Camera,
            query=OwnerQuery,
            tags=tags,
        ),
    )
    api.add(
        app,
        Operation(
            "GET",
            "/api/cameras/{camera_id}/analyses",
            list_analyses,
            "A camera's analyses, newest first",
            AnalysisPage,
            query=AnalysesQuery,
            tags=tags,
        ),
    )

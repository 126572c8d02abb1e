-- Cameras, their frames and the analyses of those frames (DESIGN.md §7, §8; docs/cameras.md).

-- A camera belongs to one user: (user_id, camera_id) is its identity, so two users may use
-- the same camera_id without ever seeing each other's camera.
CREATE TABLE cameras (
    user_id          text NOT NULL,
    camera_id        text NOT NULL,
    snapshot_url     text,
    interval_s       integer NOT NULL DEFAULT 60 CHECK (interval_s BETWEEN 1 AND 86400),
    enabled          boolean NOT NULL DEFAULT false,
    -- NULL: CAMERA_MOTION_THRESHOLD. A fraction of the frame that changed.
    motion_threshold real CHECK (motion_threshold >= 0 AND motion_threshold <= 1),
    -- The next capture slot. The scheduler advances it in the transaction that creates the
    -- slot's capture task, so a slot is never created twice nor forgotten by a new holder.
    next_capture_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, camera_id),
    CHECK (NOT enabled OR snapshot_url IS NOT NULL)
);

CREATE INDEX cameras_due ON cameras (next_capture_at) WHERE enabled;

-- One row per frame, uploaded or captured. An uploaded frame's image is kept until it is
-- analysed; a captured frame is fetched by its task and never stored whole.
CREATE TABLE camera_frames (
    id           uuid PRIMARY KEY,
    seq          bigserial NOT NULL,
    user_id      text NOT NULL,
    camera_id    text NOT NULL,
    task_id      uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    source       text NOT NULL CHECK (source IN ('upload', 'capture')),
    slot_at      timestamptz,
    content_type text,
    image        bytea,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (user_id, camera_id) REFERENCES cameras (user_id, camera_id) ON DELETE CASCADE,
    CHECK ((source = 'capture') = (slot_at IS NOT NULL))
);

-- The last line of "no slot doubled": whatever happens to the scheduler lock, a camera's
-- slot can be inserted once.
CREATE UNIQUE INDEX camera_frames_slot ON camera_frames (user_id, camera_id, slot_at)
    WHERE slot_at IS NOT NULL;
CREATE INDEX camera_frames_task ON camera_frames (task_id);

CREATE TABLE camera_analyses (
    frame_id          uuid PRIMARY KEY REFERENCES camera_frames (id) ON DELETE CASCADE,
    task_id           uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id           text NOT NULL,
    camera_id         text NOT NULL,
    frame_seq         bigint NOT NULL,
    width             integer NOT NULL,
    height            integer NOT NULL,
    format            text NOT NULL,
    brightness        real NOT NULL,
    sharpness         real NOT NULL,
    -- NULL for a camera's first analysed frame: nothing to compare against.
    motion            real,
    motion_detected   boolean NOT NULL,
    -- No foreign key: retention may delete the previous frame; the figure stays meaningful.
    previous_frame_id uuid,
    -- A 64x64 grey image: what the next frame's motion is measured against.
    signature         bytea NOT NULL,
    thumbnail         bytea NOT NULL,
    analysed_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX camera_analyses_latest ON camera_analyses (user_id, camera_id, frame_seq DESC);

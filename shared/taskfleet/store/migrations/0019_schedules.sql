-- Recurring tasks (docs/scheduling.md#schedules): a schedule creates an ordinary task at each
-- tick of its cron expression (in its time zone) or of its interval. One scheduler per fleet
-- (taskfleet.data.schedule_runner, under an advisory lock) creates each run with the chat
-- submission itself (store/sql/tf_submit_chat.sql), keyed `schedule:<id>:<tick>`, and moves
-- `next_run_at` on in the same transaction: a tick makes one task, whoever runs it.

CREATE TABLE schedules (
    id           uuid PRIMARY KEY,
    user_id      text NOT NULL,
    cron         text,
    interval_s   integer CHECK (interval_s > 0),
    timezone     text NOT NULL DEFAULT 'UTC',
    -- What each run submits: {"type": "chat_message", "chat_id", "content", "metadata"}.
    task         jsonb NOT NULL,
    missed       text NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'run_once')),
    enabled      boolean NOT NULL DEFAULT true,
    -- The next tick to run (kept while paused: resuming computes it anew).
    next_run_at  timestamptz NOT NULL,
    last_run_at  timestamptz,
    last_task_id uuid,
    -- Why the last due tick made no task (e.g. the user was over a quota), else NULL.
    last_error   text,
    -- The Idempotency-Key the schedule was created with, and the digest of that request.
    idempotency_key text,
    request_digest  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_s IS NULL))
);
CREATE INDEX schedules_user_created ON schedules (user_id, created_at DESC);
CREATE UNIQUE INDEX schedules_idempotency ON schedules (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The scheduler's look for due schedules: only the enabled ones are in it.
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE enabled;

-- A run's schedule. No foreign key: a deleted schedule's runs stay as they are, and say
-- which schedule made them.
ALTER TABLE tasks ADD COLUMN schedule_id uuid;
CREATE INDEX tasks_schedule ON tasks (schedule_id, created_at DESC) WHERE schedule_id IS NOT NULL;

ALTER TABLE schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE schedules FORCE ROW LEVEL SECURITY;
CREATE POLICY kernel ON schedules TO taskfleet_service USING (true) WITH CHECK (true);
CREATE POLICY audited ON schedules TO taskfleet_admin
    USING ((SELECT tf_audited())) WITH CHECK ((SELECT tf_audited()));
CREATE POLICY owner ON schedules TO taskfleet_app
    USING (user_id = tf_current_user()) WITH CHECK (user_id = tf_current_user());
GRANT SELECT, INSERT, UPDATE, DELETE ON schedules TO taskfleet_app;

-- Email notifications (docs/integrating.md#email-notifications): a user opts in to an email
-- when a task of theirs that ran longer than a threshold completes or fails. The row of each
-- notification is written in the transaction that ended the task, keyed by the task (one per
-- task, whatever ends it twice); the tool worker's notifier (tool_worker.notifier) claims due
-- rows and sends them at most once: a row it claimed and did not settle is never sent again.

CREATE TABLE notification_settings (
    user_id        text PRIMARY KEY,
    email          text NOT NULL,
    -- Only tasks that ran (started to ended) at least this long: a quick answer needs no mail.
    min_duration_s double precision NOT NULL DEFAULT 60 CHECK (min_duration_s >= 0),
    events         text[] NOT NULL DEFAULT ARRAY['task.completed', 'task.failed']
                   CHECK (cardinality(events) > 0
                          AND events <@ ARRAY['task.completed', 'task.failed']),
    enabled        boolean NOT NULL DEFAULT true,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notifications (
    task_id     uuid PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    email       text NOT NULL,
    event       text NOT NULL,
    -- pending: to send; sending: claimed by a notifier (`claimed_at`); sent; failed (the server
    -- refused it, or its notifier was lost while sending: it may have gone, so never again).
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at  timestamptz,
    sent_at     timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_sending ON notifications (claimed_at) WHERE status = 'sending';
CREATE INDEX notifications_user ON notifications (user_id, created_at DESC);

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['notification_settings', 'notifications'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY kernel ON %I TO taskfleet_service'
                       ' USING (true) WITH CHECK (true)', tbl);
        EXECUTE format('CREATE POLICY audited ON %I TO taskfleet_admin'
                       ' USING ((SELECT tf_audited())) WITH CHECK ((SELECT tf_audited()))', tbl);
        EXECUTE format('CREATE POLICY owner ON %I TO taskfleet_app'
                       ' USING (user_id = tf_current_user())'
                       ' WITH CHECK (user_id = tf_current_user())', tbl);
    END LOOP;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_settings TO taskfleet_app;
-- INSERT: a user's own cancel or retry may end a task in the user's transaction.
GRANT SELECT, INSERT ON notifications TO taskfleet_app;

-- The current definition is store/sql/tf_notify_task_ended.sql.
CREATE FUNCTION tf_notify_task_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END;
$$;

-- A task the user submitted (not an agent's tool call inside one) completed or failed.
CREATE TRIGGER notify_task_ended AFTER UPDATE OF status ON tasks
FOR EACH ROW WHEN (NEW.parent_id IS NULL
                   AND NEW.status IN ('completed', 'failed')
                   AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
EXECUTE FUNCTION tf_notify_task_ended();

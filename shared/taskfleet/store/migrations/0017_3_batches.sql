-- Batches (docs/scheduling.md#batches): many tasks submitted at once as one group
-- (store/sql/tf_submit_batch.sql), read as counts per status, cancelled together, and a
-- `batch.completed` event when the last member ends.

CREATE TABLE batches (
    id           uuid PRIMARY KEY,
    user_id      text NOT NULL,
    total        integer NOT NULL CHECK (total > 0),
    -- Members not yet terminal, kept by tf_batch_member_ended below: the last member's end
    -- sees 0 under the batch row's lock, so exactly one transaction completes the batch.
    unfinished   integer NOT NULL CHECK (unfinished >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX batches_user_created ON batches (user_id, created_at DESC);

ALTER TABLE tasks ADD COLUMN batch_id uuid REFERENCES batches (id);
CREATE INDEX tasks_batch ON tasks (batch_id) WHERE batch_id IS NOT NULL;

-- The event a batch's completion leaves for the relay to publish (to taskfleet.events,
-- routing key in `queue`, the body in `headers`): written in the transaction that ended the
-- last member, so that it is sent even if that process dies right after.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('task', 'retry', 'throttle', 'dead_letter', 'event'));

ALTER TABLE batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE batches FORCE ROW LEVEL SECURITY;
CREATE POLICY kernel ON batches TO taskfleet_service USING (true) WITH CHECK (true);
CREATE POLICY audited ON batches TO taskfleet_admin
    USING ((SELECT tf_audited())) WITH CHECK ((SELECT tf_audited()));
CREATE POLICY owner ON batches TO taskfleet_app
    USING (user_id = tf_current_user()) WITH CHECK (user_id = tf_current_user());
GRANT SELECT, INSERT, UPDATE ON batches TO taskfleet_app;

-- A member's status crossed the line between unfinished and terminal (either way: a rerun
-- brings a member back). Fired only for members: every other task's update skips it on
-- the WHEN clause, without calling the function. The function's current definition is
-- store/sql/tf_batch_member_ended.sql; this one is what the trigger needs to be created.
CREATE FUNCTION tf_batch_member_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b batches%ROWTYPE;
    counts jsonb;
BEGIN
    UPDATE batches SET completed_at = NULL, unfinished = batches.unfinished
        + CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN -1 ELSE 1 END
    WHERE id = NEW.batch_id RETURNING * INTO b;
    IF NOT FOUND OR b.unfinished > 0 THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_object_agg(c.status, c.n) INTO counts
    FROM (SELECT t.status, count(*) AS n FROM tasks t WHERE t.batch_id = b.id
          GROUP BY t.status) c;
    UPDATE batches SET completed_at = now() WHERE id = b.id;
    INSERT INTO outbox (task_id, queue, attempt, kind, headers)
    VALUES (NEW.id, 'batch.completed', 0, 'event', jsonb_build_object(
        'type', 'batch.completed', 'user_id', b.user_id, 'batch_id', b.id, 'total', b.total,
        'counts', counts, 'completed_at', now()));
    RETURN NULL;
END;
$$;

CREATE TRIGGER batch_member_ended AFTER UPDATE OF status ON tasks
FOR EACH ROW WHEN (NEW.batch_id IS NOT NULL
                   AND (OLD.status IN ('completed', 'failed', 'cancelled'))
                       IS DISTINCT FROM (NEW.status IN ('completed', 'failed', 'cancelled')))
EXECUTE FUNCTION tf_batch_member_ended();

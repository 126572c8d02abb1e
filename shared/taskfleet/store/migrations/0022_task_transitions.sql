-- The console's operator and task pages (issue 17).
--
-- 1. task_transitions: the history of every task's status, one row per change, written by a
--    trigger on tasks (so no path can change a status without leaving its row): the status it
--    went to, from which, the attempt it was at, the error code and the next attempt's time
--    of a retry. GET /api/tasks/{id}/transitions reads it; it goes with its task (CASCADE).
--    Rows are the task owner's (row security, as tasks).
-- 2. workers: each heartbeat also writes the process's resident memory and why it takes no
--    deliveries (memory, database), if it does not: GET /api/admin/workers shows them.
CREATE TABLE task_transitions (
    id              bigserial PRIMARY KEY,
    task_id         uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    from_status     text,
    to_status       text NOT NULL,
    attempts        integer NOT NULL,
    error_code      text,
    next_attempt_at timestamptz,
    at              timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX task_transitions_task ON task_transitions (task_id, id);

CREATE FUNCTION tf_task_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_transitions (task_id, user_id, from_status, to_status, attempts,
                                  error_code, next_attempt_at)
    VALUES (NEW.id, NEW.user_id,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status, NEW.attempts,
            CASE WHEN NEW.status IN ('failed', 'retrying') THEN NEW.error ->> 'code' END,
            CASE WHEN NEW.status = 'retrying' THEN NEW.next_attempt_at END);
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_transition_created AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION tf_task_transition();
CREATE TRIGGER tasks_transition_changed AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tf_task_transition();

ALTER TABLE task_transitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE task_transitions FORCE ROW LEVEL SECURITY;
CREATE POLICY kernel ON task_transitions TO taskfleet_service USING (true) WITH CHECK (true);
CREATE POLICY audited ON task_transitions TO taskfleet_admin
    USING ((SELECT tf_audited())) WITH CHECK ((SELECT tf_audited()));
CREATE POLICY owner ON task_transitions TO taskfleet_app
    USING (user_id = tf_current_user()) WITH CHECK (user_id = tf_current_user());
GRANT SELECT, INSERT ON task_transitions TO taskfleet_app;
GRANT USAGE, SELECT ON SEQUENCE task_transitions_id_seq TO taskfleet_app;

ALTER TABLE workers ADD COLUMN rss_bytes bigint;
ALTER TABLE workers ADD COLUMN paused jsonb NOT NULL DEFAULT '{}';  -- cause -> reason

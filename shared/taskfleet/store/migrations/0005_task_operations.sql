-- Operations users and operators ask for: cancel, retry, replay from the dead-letter queue.

-- Cancel: a task no one holds (queued, retrying, waiting) is cancelled at once and its
-- pending messages dropped; a running one gets the flag, which its worker sees within a
-- second (control message, then its cancel poll). Outcomes: missing, terminal, cancelled,
-- requested.
CREATE OR REPLACE FUNCTION tf_request_cancel(p_id uuid)
RETURNS TABLE (outcome text, event_seq bigint) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', 0::bigint;
        RETURN;
    END IF;
    IF t.status IN ('completed', 'failed', 'cancelled') THEN
        RETURN QUERY SELECT 'terminal', t.event_seq;
        RETURN;
    END IF;
    IF t.status = 'processing' THEN
        UPDATE tasks SET cancel_requested = true, updated_at = now() WHERE id = p_id;
        RETURN QUERY SELECT 'requested', t.event_seq;
        RETURN;
    END IF;
    UPDATE tasks SET status = 'cancelled', cancel_requested = true, completed_at = now(),
        updated_at = now(), event_seq = tasks.event_seq + 1
    WHERE id = p_id RETURNING * INTO t;
    UPDATE messages SET status = 'failed', updated_at = clock_timestamp()
    WHERE task_id = p_id AND role = 'assistant' AND status <> 'completed';
    DELETE FROM outbox WHERE task_id = p_id AND kind IN ('task', 'retry', 'throttle');
    RETURN QUERY SELECT 'cancelled', t.event_seq;
END;
$$;

-- Run a failed or cancelled task again with a fresh budget of attempts. The fence keeps
-- growing, so a holder of an old attempt still cannot write. `p_due_s` delays the outbox
-- row: the caller publishes right after commit and the relay covers a crash.
-- Outcomes: missing, conflict, queued.
CREATE OR REPLACE FUNCTION tf_rerun(p_id uuid, p_queue text, p_due_s double precision)
RETURNS TABLE (outcome text, event_seq bigint) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', 0::bigint;
        RETURN;
    END IF;
    IF t.status NOT IN ('failed', 'cancelled') THEN
        RETURN QUERY SELECT 'conflict', t.event_seq;
        RETURN;
    END IF;
    UPDATE tasks SET status = 'queued', attempts = 0, error = NULL, output = NULL,
        cancel_requested = false, completed_at = NULL, next_attempt_at = NULL, progress = 0,
        stage = NULL, status_message = NULL, updated_at = now(),
        event_seq = tasks.event_seq + 1
    WHERE id = p_id RETURNING * INTO t;
    UPDATE messages SET status = 'pending', content = '', updated_at = clock_timestamp()
    WHERE task_id = p_id AND role = 'assistant';
    DELETE FROM outbox WHERE task_id = p_id AND kind <> 'dead_letter';
    INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
    VALUES (p_id, p_queue, 1, 'task', now() + make_interval(secs => p_due_s));
    RETURN QUERY SELECT 'queued', t.event_seq;
END;
$$;

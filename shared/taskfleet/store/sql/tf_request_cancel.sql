-- Cancel: a task no one holds (queued, retrying, waiting) is cancelled at once and its
-- pending messages dropped; a running one gets the flag, which its worker sees within a
-- second (control message, then its cancel poll). Outcomes: missing, terminal, cancelled,
-- requested.
--
-- The outbox rows it drops are taken with SKIP LOCKED: a row the relay is
-- publishing right now is the relay's (its copy is settled by the claim, the task being
-- cancelled). Waiting for it would invert the relay's lock order (outbox row, then task)
-- and deadlock.
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
    PERFORM tf_chat_cancelled(p_id);
    DELETE FROM outbox WHERE id IN (
        SELECT o.id FROM outbox o WHERE o.task_id = p_id AND o.kind IN ('task', 'retry', 'throttle')
        FOR UPDATE SKIP LOCKED);
    RETURN QUERY SELECT 'cancelled', t.event_seq;
END;
$$;

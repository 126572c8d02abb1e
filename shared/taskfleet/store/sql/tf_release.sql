-- Hand a task back without counting the attempt (a graceful stop): queued again, and an
-- outbox row due at once carries its next message, so the runner acknowledges the one it
-- held instead of returning it (a returned copy would be one attempt behind the row).
-- Returns the event_seq, NULL when the fence is stale.
CREATE OR REPLACE FUNCTION tf_release(p_id uuid, p_fence bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    UPDATE tasks SET status = 'queued', attempts = greatest(attempts - 1, 0), updated_at = now(),
        event_seq = event_seq + 1, fence = fence + 1, holder = NULL, held_copy = NULL,
        deadline_at = NULL
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (task_id, queue, attempt, kind)
    VALUES (p_id, tf_queue_of(t.type), t.attempts + 1, 'task');
    RETURN t.event_seq;
END;
$$;

-- Run a failed or cancelled task again with a fresh budget of attempts. The fence keeps
-- growing, so a holder of an old attempt still cannot write. `p_due_s` delays the outbox
-- row, whose id it answers: the caller publishes right after commit and the relay covers a
-- crash. The task's pending rows go, not its dead letter nor the `batch.completed` event its
-- end may have left (tf_batch_member_ended). Outcomes: missing, conflict, queued.
CREATE OR REPLACE FUNCTION tf_rerun(p_id uuid, p_queue text, p_due_s double precision)
RETURNS TABLE (outcome text, event_seq bigint, outbox_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
    row_id bigint;
BEGIN
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', 0::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF t.status NOT IN ('failed', 'cancelled') THEN
        RETURN QUERY SELECT 'conflict', t.event_seq, NULL::bigint;
        RETURN;
    END IF;
    UPDATE tasks SET status = 'queued', attempts = 0, error = NULL, output = NULL,
        cancel_requested = false, completed_at = NULL, next_attempt_at = NULL, progress = 0,
        stage = NULL, status_message = NULL, updated_at = now(),
        event_seq = tasks.event_seq + 1, holder = NULL, held_copy = NULL, deadline_at = NULL
    WHERE id = p_id RETURNING * INTO t;
    PERFORM tf_chat_rerun(p_id);
    DELETE FROM outbox WHERE id IN (
        SELECT o.id FROM outbox o
        WHERE o.task_id = p_id AND o.kind NOT IN ('dead_letter', 'event')
        FOR UPDATE SKIP LOCKED);
    INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
    VALUES (p_id, p_queue, 1, 'task', now() + make_interval(secs => p_due_s))
    RETURNING id INTO row_id;
    RETURN QUERY SELECT 'queued', t.event_seq, row_id;
END;
$$;

-- processing -> failed, fenced, and its dead letter in the same transaction. Answers the
-- event_seq, NULL when the fence is stale.
CREATE OR REPLACE FUNCTION tf_fail(
    p_id uuid, p_fence bigint, p_error jsonb, p_queue text, p_reason text
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    seq bigint;
BEGIN
    UPDATE tasks SET status = 'failed', error = p_error, completed_at = now(), updated_at = now(),
        event_seq = event_seq + 1
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING attempts, event_seq INTO n, seq;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM tf_chat_failed(p_id);
    -- The dead letter is decided in the same transaction as the failure, so neither is lost.
    INSERT INTO outbox (task_id, queue, attempt, kind, headers)
    VALUES (p_id, p_queue || '.dlq', n, 'dead_letter',
            jsonb_build_object('x-taskfleet-reason', p_reason,
                               'x-taskfleet-error', p_error ->> 'code'));
    RETURN seq;
END;
$$;

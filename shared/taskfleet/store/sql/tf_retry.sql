-- processing -> retrying, fenced: the next attempt's message is an outbox row due after the
-- backoff p_delay_s. Answers the event_seq, NULL when the fence is stale.
CREATE OR REPLACE FUNCTION tf_retry(
    p_id uuid, p_fence bigint, p_error jsonb, p_queue text, p_delay_s double precision
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    seq bigint;
    due timestamptz := now() + make_interval(secs => p_delay_s);
BEGIN
    UPDATE tasks SET status = 'retrying', error = p_error, next_attempt_at = due,
        updated_at = now(), event_seq = event_seq + 1
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING attempts, event_seq INTO n, seq;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
    VALUES (p_id, p_queue, n + 1, 'retry', due);
    RETURN seq;
END;
$$;

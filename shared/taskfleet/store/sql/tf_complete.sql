-- processing -> completed, fenced, with the assistant's reply when the task has one.
-- Like every transition after a claim: `WHERE fence = p_fence` rejects a stale holder, and the
-- answer is the bumped event_seq (NULL: the fence is stale).
CREATE OR REPLACE FUNCTION tf_complete(p_id uuid, p_fence bigint, p_output jsonb, p_reply text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
BEGIN
    UPDATE tasks SET status = 'completed', output = p_output, progress = 1, error = NULL,
        completed_at = now(), updated_at = now(), event_seq = event_seq + 1
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING event_seq INTO seq;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_reply IS NOT NULL THEN
        UPDATE messages SET content = p_reply, status = 'completed',
            updated_at = clock_timestamp()
        WHERE task_id = p_id AND role = 'assistant';
    END IF;
    RETURN seq;
END;
$$;

-- processing -> cancelled, fenced, keeping the partial output the handler saved. Answers
-- the event_seq, NULL when the fence is stale.
CREATE OR REPLACE FUNCTION tf_cancelled(p_id uuid, p_fence bigint, p_partial jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    seq bigint;
BEGIN
    UPDATE tasks SET status = 'cancelled', partial_output = coalesce(p_partial, partial_output),
        completed_at = now(), updated_at = now(), event_seq = event_seq + 1
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING event_seq INTO seq;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM tf_chat_cancelled(p_id);
    RETURN seq;
END;
$$;

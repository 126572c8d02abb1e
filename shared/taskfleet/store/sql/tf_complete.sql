-- processing -> completed, fenced, and the chat side of it when there is a reply (tf_chat_reply).
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
        PERFORM tf_chat_reply(p_id, p_reply);
    END IF;
    RETURN seq;
END;
$$;

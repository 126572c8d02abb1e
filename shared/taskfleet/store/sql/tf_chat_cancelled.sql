-- The chat side of a cancelled task (tf_cancelled, tf_request_cancel, a claim that finds the
-- cancel): its assistant message failed, unless its reply was already complete.
CREATE OR REPLACE FUNCTION tf_chat_cancelled(p_task_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages SET status = 'failed', updated_at = clock_timestamp()
    WHERE task_id = p_task_id AND role = 'assistant' AND status <> 'completed';
END;
$$;

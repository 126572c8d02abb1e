-- The chat side of a failed task (tf_fail, an exhausted claim, the reconciler's last
-- attempt): its assistant message failed too.
CREATE OR REPLACE FUNCTION tf_chat_failed(p_task_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages SET status = 'failed', updated_at = clock_timestamp()
    WHERE task_id = p_task_id AND role = 'assistant';
END;
$$;

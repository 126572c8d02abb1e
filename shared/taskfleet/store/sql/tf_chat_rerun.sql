-- The chat side of a task run again (tf_rerun): its assistant message pending and empty.
CREATE OR REPLACE FUNCTION tf_chat_rerun(p_task_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages SET status = 'pending', content = '', updated_at = clock_timestamp()
    WHERE task_id = p_task_id AND role = 'assistant';
END;
$$;

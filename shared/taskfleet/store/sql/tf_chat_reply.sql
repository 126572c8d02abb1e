-- The chat side of a completed task (tf_complete): the assistant message holds the reply.
CREATE OR REPLACE FUNCTION tf_chat_reply(p_task_id uuid, p_reply text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE messages SET content = p_reply, status = 'completed', updated_at = clock_timestamp()
    WHERE task_id = p_task_id AND role = 'assistant';
END;
$$;

-- The id of a task's assistant message (NULL: the task has none, not being a chat's).
CREATE OR REPLACE FUNCTION tf_chat_assistant(p_task_id uuid) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
-- plpgsql, not sql: its plan is prepared once per session (see tf_chat_context).
BEGIN
    RETURN (SELECT m.id FROM messages m WHERE m.task_id = p_task_id AND m.role = 'assistant');
END;
$$;

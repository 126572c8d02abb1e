-- The chat side of creating a chat task from its message (tf_claim, for a message published
-- straight to the queue): the user's message and the assistant's pending placeholder, keyed
-- by the task, once (a second claim of the same task adds nothing). Answers the assistant
-- message's id, NULL when nothing was added (no chat named, or already there).
CREATE OR REPLACE FUNCTION tf_chat_open(
    p_task_id uuid, p_chat_id text, p_user_id text, p_content text
) RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    assistant uuid;
BEGIN
    IF p_chat_id IS NULL THEN
        RETURN NULL;
    END IF;
    WITH added AS (
        INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)
        VALUES (tf_uuid7(), p_chat_id, p_user_id, 'user', p_content, 'completed',
                p_task_id),
               (tf_uuid7(), p_chat_id, p_user_id, 'assistant', '', 'pending', p_task_id)
        ON CONFLICT DO NOTHING
        RETURNING messages.id, messages.role
    )
    SELECT a.id INTO assistant FROM added a WHERE a.role = 'assistant';
    RETURN assistant;
END;
$$;

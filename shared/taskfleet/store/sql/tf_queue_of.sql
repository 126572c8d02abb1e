-- The queue a task type is consumed from (constants.QUEUES; the relay adds the namespace).
CREATE OR REPLACE FUNCTION tf_queue_of(p_type text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_type
        WHEN 'chat_message' THEN 'chat_tasks'
        WHEN 'tool_execution' THEN 'tool_executions'
        WHEN 'document_processing' THEN 'document_processing'
        WHEN 'camera_analysis' THEN 'camera_analysis'
    END;
$$;

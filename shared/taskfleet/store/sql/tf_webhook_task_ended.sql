-- A task the user submitted ended (completed, failed or cancelled, by whatever path: the
-- runner, a claim, a user's cancel, the reconciler): one webhook delivery per endpoint of its
-- user that takes the event, and one to the task's own `callback_url` if it has one
-- (migrations/0028), in the same transaction (docs/integrating.md#webhooks). The body
-- is what the receiver gets, as Standard Webhooks lays it out: {type, timestamp, data}; the
-- task's output is not in it (GET /api/tasks/{id} answers it to the task's owner).
--
-- The trigger that calls it, webhook_task_ended, is schema: migrations/0021_webhooks.sql.
CREATE OR REPLACE FUNCTION tf_webhook_task_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_event text := 'task.' || NEW.status;
BEGIN
    INSERT INTO webhook_deliveries (id, endpoint_id, user_id, task_id, event, payload)
    SELECT tf_uuid7(), e.id, e.user_id, NEW.id, v_event, jsonb_build_object(
        'type', v_event, 'timestamp', now(), 'data', jsonb_build_object(
            'task_id', NEW.id, 'task_type', NEW.type, 'status', NEW.status,
            'user_id', NEW.user_id, 'chat_id', NEW.chat_id, 'batch_id', NEW.batch_id,
            'metadata', NEW.metadata, 'error', NEW.error, 'attempts', NEW.attempts,
            'created_at', NEW.created_at, 'completed_at', coalesce(NEW.completed_at, now())))
    FROM (SELECT * FROM webhook_endpoints
          WHERE user_id = NEW.user_id AND task_id IS NULL AND batch_id IS NULL
          UNION ALL
          SELECT * FROM webhook_endpoints WHERE task_id = NEW.id) e
    WHERE v_event = ANY (e.events);
    RETURN NULL;
END;
$$;

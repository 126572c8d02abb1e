-- An event row of the outbox (kind `event`: a batch's `batch.completed`, written by
-- store/sql/tf_batch_member_ended.sql): besides its publish to taskfleet.events, one webhook
-- delivery per endpoint of its user that takes the event, and one to its batch's own
-- `callback_url` if it has one (migrations/0028), in the same transaction. The
-- row's `headers` are the event; its fields other than `type` and `user_id` are `data`.
--
-- The trigger that calls it, webhook_event, is schema: migrations/0021_webhooks.sql.
CREATE OR REPLACE FUNCTION tf_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_event text := NEW.headers ->> 'type';
BEGIN
    INSERT INTO webhook_deliveries (id, endpoint_id, user_id, task_id, event, payload)
    SELECT tf_uuid7(), e.id, e.user_id, NEW.task_id, v_event, jsonb_build_object(
        'type', v_event, 'timestamp', now(), 'data', (NEW.headers - 'type'))
    FROM (SELECT * FROM webhook_endpoints
          WHERE user_id = NEW.headers ->> 'user_id' AND task_id IS NULL AND batch_id IS NULL
          UNION ALL
          SELECT * FROM webhook_endpoints
          WHERE batch_id = (NEW.headers ->> 'batch_id')::uuid
            AND user_id = NEW.headers ->> 'user_id') e
    WHERE v_event = ANY (e.events);
    RETURN NULL;
END;
$$;

-- A task the user submitted completed or failed: an email notification for its user, if they
-- asked for one of this event and the task ran (from its first start to now) at least their
-- threshold (docs/integrating.md#email-notifications). Keyed by the task: a task rerun and
-- ended again is not notified twice.
--
-- The trigger that calls it, notify_task_ended, is schema: migrations/0024_notifications.sql.
CREATE OR REPLACE FUNCTION tf_notify_task_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_event text := 'task.' || NEW.status;
BEGIN
    INSERT INTO notifications (task_id, user_id, email, event)
    SELECT NEW.id, s.user_id, s.email, v_event
    FROM notification_settings s
    WHERE s.user_id = NEW.user_id AND s.enabled AND v_event = ANY (s.events)
      AND NEW.started_at IS NOT NULL
      AND coalesce(NEW.completed_at, now()) - NEW.started_at
          >= make_interval(secs => s.min_duration_s)
    ON CONFLICT (task_id) DO NOTHING;
    RETURN NULL;
END;
$$;

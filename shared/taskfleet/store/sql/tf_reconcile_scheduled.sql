-- A repair of the reconciler (taskfleet.runtime.reconciler), like tf_reconcile_lost: it locks
-- what it repairs with SKIP LOCKED, changes it, and answers one row per repair.
--
-- Scheduled tasks due for p_after_s that have no outbox row: the row that was to publish
-- them at their time is gone (the relay deletes it only in the transaction that queues the
-- task, and a cancel only with the task cancelled). A new row, due now, goes out; the relay
-- queues the task when it publishes it, as it would have at its time (migrations/0017_1).
CREATE OR REPLACE FUNCTION tf_reconcile_scheduled(p_after_s double precision, p_limit integer)
RETURNS TABLE (id uuid, type text, user_id text, chat_id text, status text, event_seq bigint)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT t.id FROM tasks t
        WHERE t.status = 'scheduled'
          AND t.run_at < now() - make_interval(secs => p_after_s)
          AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.task_id = t.id)
        ORDER BY t.run_at LIMIT p_limit
        FOR UPDATE OF t SKIP LOCKED
    ), sent AS (
        INSERT INTO outbox (task_id, queue, attempt, kind)
        SELECT t.id, tf_queue_of(t.type), t.attempts + 1, 'task'
        FROM tasks t JOIN due USING (id)
        RETURNING task_id
    )
    SELECT t.id, t.type, t.user_id, t.chat_id, t.status, t.event_seq
    FROM tasks t JOIN sent ON sent.task_id = t.id
$$;

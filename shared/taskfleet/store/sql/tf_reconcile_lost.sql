-- A repair of the reconciler (taskfleet.runtime.reconciler), like tf_reconcile_waiting and
-- tf_reconcile_running: it locks what it repairs with SKIP LOCKED (a task being claimed or
-- written right now is not lost), changes it, and answers one row per repair for the
-- caller's events, metrics and logs.
--
-- Queued or retrying tasks that are due, have no outbox row and have not changed for
-- p_after_s: their message was lost. A new one goes out through the outbox, with the next
-- attempt number (the claim settles any copy that turns up after all as a duplicate). A
-- queue in p_busy has messages waiting, maybe this task's: its tasks are given p_backlog_s.
CREATE OR REPLACE FUNCTION tf_reconcile_lost(p_after_s double precision, p_busy text[],
                                  p_backlog_s double precision, p_limit integer)
RETURNS TABLE (id uuid, type text, user_id text, chat_id text, status text, event_seq bigint)
LANGUAGE sql AS $$
    WITH lost AS (
        SELECT t.id FROM tasks t
        WHERE t.status IN ('queued', 'retrying')
          AND t.updated_at < now() - make_interval(secs => p_after_s)
          AND coalesce(t.next_attempt_at, t.updated_at) < now() - make_interval(secs => p_after_s)
          AND (tf_queue_of(t.type) <> ALL (p_busy)
               OR t.updated_at < now() - make_interval(secs => p_backlog_s))
          AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.task_id = t.id)
        ORDER BY t.updated_at LIMIT p_limit
        FOR UPDATE OF t SKIP LOCKED
    ), sent AS (
        INSERT INTO outbox (task_id, queue, attempt, kind)
        SELECT t.id, tf_queue_of(t.type), t.attempts + 1, 'task'
        FROM tasks t JOIN lost USING (id)
    )
    UPDATE tasks t SET status = 'queued', updated_at = now()
    FROM lost WHERE t.id = lost.id
    RETURNING t.id, t.type, t.user_id, t.chat_id, t.status, t.event_seq
$$;

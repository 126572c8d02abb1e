-- A repair of the reconciler (see tf_reconcile_lost).
--
-- Waiting parents whose children are all terminal, unchanged for p_after_s: the resume that
-- the last child's trigger (tf_child_finished) queues was lost. Resume them the same way.
CREATE OR REPLACE FUNCTION tf_reconcile_waiting(p_after_s double precision, p_limit integer)
RETURNS TABLE (id uuid, type text, user_id text, chat_id text, status text, event_seq bigint)
LANGUAGE sql AS $$
    WITH stuck AS (
        SELECT p.id FROM tasks p
        WHERE p.status = 'waiting' AND p.updated_at < now() - make_interval(secs => p_after_s)
          AND NOT EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = p.id
                          AND c.status NOT IN ('completed', 'failed', 'cancelled'))
        ORDER BY p.updated_at LIMIT p_limit
        FOR UPDATE OF p SKIP LOCKED
    ), sent AS (
        INSERT INTO outbox (task_id, queue, attempt, kind)
        SELECT p.id, tf_queue_of(p.type), p.attempts + 1, 'task'
        FROM tasks p JOIN stuck USING (id)
    )
    UPDATE tasks p SET status = 'queued', updated_at = now(), event_seq = p.event_seq + 1
    FROM stuck WHERE p.id = stuck.id
    RETURNING p.id, p.type, p.user_id, p.chat_id, p.status, p.event_seq
$$;

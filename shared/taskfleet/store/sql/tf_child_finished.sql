-- When a child task ends (completed, failed or cancelled, by whatever path: the runner, a
-- claim that finds it exhausted or cancelled, a user's cancel), the same transaction re-queues
-- its waiting parent if it was the last unfinished child: waiting -> queued, and an outbox
-- row whose attempt is one past the parent's attempts, so that tf_claim takes it.
--
-- The parent row is locked first, so two children ending at once are serialised on it; the
-- sibling check is a new statement, hence a new snapshot under READ COMMITTED, so the second
-- one sees the first one's commit and exactly one of them re-queues the parent.
--
-- The trigger that calls it, tasks_child_finished (AFTER UPDATE OF status, when a child turns
-- terminal), is schema: migrations/0007_agent.sql.
CREATE OR REPLACE FUNCTION tf_child_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p tasks%ROWTYPE;
BEGIN
    SELECT * INTO p FROM tasks WHERE id = NEW.parent_id FOR UPDATE;
    IF NOT FOUND OR p.status <> 'waiting' THEN
        RETURN NULL;  -- cancelled meanwhile, or not an agent's parent
    END IF;
    IF EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = p.id
               AND c.status NOT IN ('completed', 'failed', 'cancelled')) THEN
        RETURN NULL;
    END IF;
    UPDATE tasks SET status = 'queued', updated_at = now(), event_seq = tasks.event_seq + 1
    WHERE id = p.id;
    INSERT INTO outbox (task_id, queue, attempt, kind)
    VALUES (p.id, tf_queue_of(p.type), p.attempts + 1, 'task');
    RETURN NULL;
END;
$$;

-- Delete a finished task (DELETE /api/tasks/{id}, `taskfleet delete`). Only a terminal one
-- (completed, failed, cancelled) whose children are all terminal too; what hangs off it (its
-- chat messages, unsent outbox rows, children, tool calls) goes through ON DELETE CASCADE.
-- Outcomes: missing, conflict (not terminal), children_running, deleted.
CREATE OR REPLACE FUNCTION tf_delete_task(p_id uuid)
RETURNS TABLE (outcome text, status text) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', NULL::text;
        RETURN;
    END IF;
    IF t.status NOT IN ('completed', 'failed', 'cancelled') THEN
        RETURN QUERY SELECT 'conflict', t.status;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = p_id
               AND c.status NOT IN ('completed', 'failed', 'cancelled')) THEN
        RETURN QUERY SELECT 'children_running', t.status;
        RETURN;
    END IF;
    DELETE FROM tasks WHERE id = p_id;
    RETURN QUERY SELECT 'deleted', t.status;
END;
$$;

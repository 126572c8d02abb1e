-- processing -> waiting, fenced, in one transaction with the children it waits for: their
-- task rows (same user and chat as the parent: a handler never names another user) and their
-- outbox rows, due after p_grace_s; they run at the parent's priority (docs/priorities.md) (the runner publishes them itself right after commit; the
-- relay covers a crash in between). The parent's checkpoint is its agent state. Answers the
-- children's outbox row ids in the order given, so that the runner forgets exactly the rows
-- it published. A child may carry a `traceparent` (the parent's attempt's span, with tracing
-- on; migrations/0029): the messages the relay publishes for it join that trace.
--
-- The attempt that ends in `waiting` succeeded, so it is given back: max_attempts grows by one.
-- A resume is a claim and counts an attempt like any other, so `max_attempts - attempts`
-- (the failures still allowed) is what a tool round leaves unchanged; a long agent never
-- exhausts its budget by working, only by failing.
CREATE OR REPLACE FUNCTION tf_wait_for(
    p_id uuid, p_fence bigint, p_checkpoint jsonb, p_children jsonb, p_grace_s double precision
) RETURNS TABLE (event_seq bigint, outbox_ids bigint[]) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
    ids bigint[];
BEGIN
    IF jsonb_typeof(p_children) <> 'array' OR jsonb_array_length(p_children) = 0 THEN
        RAISE EXCEPTION 'tf_wait: a waiting task needs at least one child';
    END IF;
    UPDATE tasks SET status = 'waiting', checkpoint = p_checkpoint,
        max_attempts = tasks.max_attempts + 1, updated_at = now(),
        event_seq = tasks.event_seq + 1, holder = NULL, held_copy = NULL, deadline_at = NULL
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO tasks (id, type, user_id, chat_id, parent_id, input, max_attempts, priority,
                       traceparent)
    SELECT c.id, c.type, t.user_id, t.chat_id, p_id, c.input, c.max_attempts, t.priority,
           c.traceparent
    FROM jsonb_to_recordset(p_children) AS c(id uuid, type text, input jsonb,
                                              max_attempts integer, traceparent text);
    WITH sent AS (
        INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
        SELECT c.id, tf_queue_of(c.type), 1, 'task', now() + make_interval(secs => p_grace_s)
        FROM jsonb_to_recordset(p_children) AS c(id uuid, type text)
        RETURNING outbox.id, outbox.task_id
    )
    SELECT array_agg(s.id ORDER BY c.n) INTO ids
    FROM jsonb_array_elements(p_children) WITH ORDINALITY AS c(child, n)
    JOIN sent s ON s.task_id = (c.child ->> 'id')::uuid;
    RETURN QUERY SELECT t.event_seq, ids;
END;
$$;

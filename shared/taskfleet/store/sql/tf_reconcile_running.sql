-- A repair of the reconciler (see tf_reconcile_lost).
--
-- Running tasks whose holder is gone, or that no heartbeat holds (p_holders: trust the
-- registry; the caller passes false right after its own outage, when every heartbeat reads
-- stale), or that are past their deadline by p_grace_s. Handed over: queued with the next
-- attempt's message, the fence moved on (a holder that still lives can no longer write); or,
-- attempts spent, failed with the reason's code and dead-lettered. `reason`:
--   holder_gone    its holder is lost or stopped in the registry (or has no row)
--   not_held       its holder lives, but a heartbeat a whole interval after the task's last
--                  change does not list it (the holder lost track of it)
--   past_deadline  its deadline passed p_grace_s ago
CREATE OR REPLACE FUNCTION tf_reconcile_running(p_holders boolean, p_grace_s double precision,
                                     p_limit integer)
RETURNS TABLE (id uuid, type text, user_id text, chat_id text, status text, event_seq bigint,
               reason text)
LANGUAGE plpgsql AS $$
DECLARE
    c record;
    t tasks%ROWTYPE;
    why text;
    code text;
    queue text;
BEGIN
    FOR c IN
        -- A join rather than tf_holder_gone per row: one pass over the registry.
        SELECT r.id, k.why FROM tasks r LEFT JOIN workers w ON w.id = r.holder,
        LATERAL (SELECT CASE
            WHEN p_holders AND r.holder IS NOT NULL
                 AND (w.id IS NULL
                      OR NOT tf_worker_live(w.stopped_at, w.heartbeat_at, w.heartbeat_s))
                THEN 'holder_gone'
            WHEN p_holders AND r.holder IS NOT NULL
                 AND w.heartbeat_at > r.updated_at + make_interval(secs => w.heartbeat_s)
                 AND NOT r.id = ANY (w.inflight)
                THEN 'not_held'
            WHEN r.deadline_at < now() - make_interval(secs => p_grace_s)
                THEN 'past_deadline'
            END AS why) k
        WHERE r.status = 'processing' AND k.why IS NOT NULL
        ORDER BY r.updated_at LIMIT p_limit
        FOR UPDATE OF r SKIP LOCKED
    LOOP
        SELECT * INTO t FROM tasks WHERE tasks.id = c.id;
        why := c.why;
        code := CASE why WHEN 'past_deadline' THEN 'deadline_exceeded' ELSE 'worker_lost' END;
        queue := tf_queue_of(t.type);
        IF t.attempts < t.max_attempts THEN
            UPDATE tasks SET status = 'queued', fence = tasks.fence + 1, holder = NULL,
                held_copy = NULL, deadline_at = NULL, updated_at = now(),
                event_seq = tasks.event_seq + 1,
                error = jsonb_build_object('code', code, 'retryable', true, 'message',
                    format('attempt %s handed over by the reconciler: %s', t.attempts, why))
            WHERE tasks.id = t.id RETURNING * INTO t;
            INSERT INTO outbox (task_id, queue, attempt, kind)
            VALUES (t.id, queue, t.attempts + 1, 'task');
        ELSE
            UPDATE tasks SET status = 'failed', fence = tasks.fence + 1, holder = NULL,
                held_copy = NULL, completed_at = now(), updated_at = now(),
                event_seq = tasks.event_seq + 1,
                error = jsonb_build_object('code', code, 'retryable', false, 'message',
                    format('attempts spent: the last (%s) ended by the reconciler: %s',
                           t.attempts, why))
            WHERE tasks.id = t.id RETURNING * INTO t;
            PERFORM tf_chat_failed(t.id);
            INSERT INTO outbox (task_id, queue, attempt, kind, headers)
            VALUES (t.id, queue || '.dlq', t.attempts, 'dead_letter',
                    jsonb_build_object('x-taskfleet-reason', 'max_attempts: ' || why,
                                       'x-taskfleet-error', code));
        END IF;
        RETURN QUERY SELECT t.id, t.type, t.user_id, t.chat_id, t.status, t.event_seq, why;
    END LOOP;
END;
$$;

-- A member of a batch turned terminal, or came back from it (a rerun): the batch's count of
-- unfinished members follows. The member that brings it to 0 completes the batch and, in the
-- same transaction, makes its `then` task due (once: a batch completed again after a rerun
-- finds it started) and leaves its `batch.completed` event in the outbox for the relay
-- (taskfleet.broker.outbox publishes kind `event` rows to taskfleet.events).
--
-- The batch row is updated first, so members ending at once are serialised on it, and
-- exactly one of them sees 0; the counts read after it are a new statement, hence a new
-- snapshot under READ COMMITTED, which holds every other member's commit.
--
-- The trigger that calls it, batch_member_ended (AFTER UPDATE OF status, for members only),
-- is schema: migrations/0017_3_batches.sql.
CREATE OR REPLACE FUNCTION tf_batch_member_ended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b batches%ROWTYPE;
    counts jsonb;
BEGIN
    UPDATE batches SET completed_at = NULL, unfinished = batches.unfinished
        + CASE WHEN NEW.status IN ('completed', 'failed', 'cancelled') THEN -1 ELSE 1 END
    WHERE id = NEW.batch_id RETURNING * INTO b;
    IF NOT FOUND OR b.unfinished > 0 THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_object_agg(c.status, c.n) INTO counts
    FROM (SELECT t.status, count(*) AS n FROM tasks t WHERE t.batch_id = b.id
          GROUP BY t.status) c;
    UPDATE batches SET completed_at = now() WHERE id = b.id;
    -- Its `then` task, waiting with no time, is due now: the relay queues and publishes it.
    IF b.then_task_id IS NOT NULL THEN
        UPDATE tasks SET run_at = now(), updated_at = now()
        WHERE id = b.then_task_id AND status = 'scheduled' AND run_at = 'infinity';
        IF FOUND THEN
            UPDATE outbox SET available_at = now() WHERE task_id = b.then_task_id AND kind = 'task';
        END IF;
    END IF;
    INSERT INTO outbox (task_id, queue, attempt, kind, headers)
    VALUES (NEW.id, 'batch.completed', 0, 'event', jsonb_build_object(
        'type', 'batch.completed', 'user_id', b.user_id, 'batch_id', b.id, 'total', b.total,
        'counts', counts, 'completed_at', now()));
    RETURN NULL;
END;
$$;

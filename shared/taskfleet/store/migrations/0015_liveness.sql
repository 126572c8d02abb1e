-- Liveness (docs/design-notes.md, "Every accepted task finishes"): who holds a running task,
-- which copy of its message it holds, until when; outbox rows forgotten by id; the
-- reconciler's repairs.

-- The attempt in progress: the consumer that claimed it (a row of `workers`), the copy of the
-- message it holds (the `x-taskfleet-copy` header; NULL for a message a backend published
-- itself) and when its deadline passes. Set by every claim.
ALTER TABLE tasks ADD COLUMN holder uuid, ADD COLUMN held_copy text,
    ADD COLUMN deadline_at timestamptz;

-- The reconciler reads unfinished tasks only: a small index even on a table of millions.
CREATE INDEX tasks_unfinished ON tasks (status, updated_at)
    WHERE status IN ('queued', 'retrying', 'processing', 'waiting');
-- ("Has this task an outbox row?" is served by outbox_task, 0006.)

-- Whether a worker process is alive: heartbeat within 2.5 of its intervals
-- (taskfleet/registry.py LOST_AFTER) and not stopped.
CREATE FUNCTION tf_worker_live(p_stopped_at timestamptz, p_heartbeat_at timestamptz,
                               p_heartbeat_s double precision)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_stopped_at IS NULL
       AND p_heartbeat_at > now() - make_interval(secs => p_heartbeat_s * 2.5)
$$;

-- Whether the holder of a running task is gone. An unknown holder (claimed by a version
-- that did not record it) is not known to be gone.
CREATE FUNCTION tf_holder_gone(p_holder uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_holder IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM workers w
        WHERE w.id = p_holder AND tf_worker_live(w.stopped_at, w.heartbeat_at, w.heartbeat_s))
$$;

-- Claim a delivery (supersedes 0002 and 0008). Verdicts:
--   claimed    run it; `fence` is the token for every later write
--   duplicate  terminal or waiting; a stale copy of an earlier attempt; or a copy of a task
--              that a live holder runs
--   unknown    no such task, and its type may not create one from a message: only a chat
--              message does (DESIGN.md §5); anything else is forged or outlived its task
--   mismatch   the message names a task of another user or type (untrusted input)
--   cancelled  cancel was requested before it ran; it is now cancelled
--   exhausted  its attempts are spent (its workers died every time); now failed
--   throttled  the user is at the concurrency limit; put back via the outbox, no attempt used
--
-- A running task is taken over only when its holder has really lost it: the broker
-- redelivered the very copy the holder claimed (the broker only does that once the holder's
-- channel is gone or it handed the message back), or the holder's process is gone from the
-- worker registry. Any other copy (a relay's re-publish racing a slow confirm, a copy
-- another worker handed back) is a duplicate while the holder lives.
CREATE FUNCTION tf_claim(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_payload jsonb,
    p_attempt integer, p_redelivered boolean, p_queue text, p_max_attempts integer,
    p_user_limit integer, p_throttle_s double precision,
    p_copy text, p_holder uuid, p_deadline_s double precision
) RETURNS TABLE (
    verdict text, fence bigint, attempts integer, max_attempts integer, checkpoint jsonb,
    input jsonb, user_id text, chat_id text, created_at timestamptz, event_seq bigint,
    message_id uuid
) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
    running integer;
    inserted uuid;
    assistant uuid;
    due timestamptz := now() + make_interval(secs => coalesce(p_deadline_s, 0));
BEGIN
    IF p_deadline_s IS NULL THEN
        due := NULL;
    END IF;
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        IF p_type <> 'chat_message' THEN
            RETURN QUERY SELECT 'unknown', 0::bigint, 0, 0, NULL::jsonb, NULL::jsonb,
                p_user_id, p_chat_id, now(), 0::bigint, NULL::uuid;
            RETURN;
        END IF;
        -- A chat message published straight to the queue (no row yet). Unless its user is at
        -- the limit, the row is born claimed: one insert instead of insert, select and update.
        IF p_user_limit > 0 THEN
            PERFORM pg_advisory_xact_lock(hashtext('tf-user:' || p_type), hashtext(p_user_id));
            SELECT count(*) INTO running FROM tasks r
            WHERE r.user_id = p_user_id AND r.type = p_type AND r.status = 'processing';
        END IF;
        IF p_user_limit <= 0 OR running < p_user_limit THEN
            INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts, status, attempts,
                               fence, started_at, event_seq, holder, held_copy, deadline_at)
            VALUES (p_id, p_type, p_user_id, p_chat_id, p_payload, p_max_attempts, 'processing',
                    1, 1, now(), 1, p_holder, p_copy, due)
            ON CONFLICT (id) DO NOTHING
            RETURNING * INTO t;
            IF FOUND THEN
                IF p_chat_id IS NOT NULL THEN
                    assistant := gen_random_uuid();
                    INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)
                    VALUES (gen_random_uuid(), p_chat_id, p_user_id, 'user',
                            coalesce(p_payload ->> 'content', ''), 'completed', p_id),
                           (assistant, p_chat_id, p_user_id, 'assistant', '', 'pending', p_id);
                END IF;
                RETURN QUERY SELECT 'claimed', t.fence, t.attempts, t.max_attempts, t.checkpoint,
                    t.input, t.user_id, t.chat_id, t.created_at, t.event_seq, assistant;
                RETURN;
            END IF;
        ELSE
            INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts)
            VALUES (p_id, p_type, p_user_id, p_chat_id, p_payload, p_max_attempts)
            ON CONFLICT (id) DO NOTHING
            RETURNING tasks.id INTO inserted;
            IF inserted IS NOT NULL AND p_chat_id IS NOT NULL THEN
                INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)
                VALUES (gen_random_uuid(), p_chat_id, p_user_id, 'user',
                        coalesce(p_payload ->> 'content', ''), 'completed', p_id),
                       (gen_random_uuid(), p_chat_id, p_user_id, 'assistant', '', 'pending', p_id)
                ON CONFLICT DO NOTHING;
            END IF;
        END IF;
        -- Over the limit (the queued row waits for its throttled copy), or another claim
        -- inserted it first: the general path below decides.
        SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    END IF;

    IF t.user_id <> p_user_id OR t.type <> p_type THEN
        RETURN QUERY SELECT 'mismatch', t.fence, t.attempts, t.max_attempts, NULL::jsonb,
            NULL::jsonb, t.user_id, t.chat_id, t.created_at, t.event_seq, NULL::uuid;
        RETURN;
    END IF;

    IF t.status IN ('completed', 'failed', 'cancelled', 'waiting')
       OR (t.status IN ('queued', 'retrying') AND p_attempt <= t.attempts)
       OR (t.status = 'processing'
           AND NOT (p_redelivered AND (t.held_copy IS NULL OR t.held_copy = p_copy))
           AND NOT tf_holder_gone(t.holder)) THEN
        RETURN QUERY SELECT 'duplicate', t.fence, t.attempts, t.max_attempts, NULL::jsonb,
            NULL::jsonb, t.user_id, t.chat_id, t.created_at, t.event_seq, NULL::uuid;
        RETURN;
    END IF;

    IF t.cancel_requested THEN
        UPDATE tasks SET status = 'cancelled', completed_at = now(), updated_at = now(),
            event_seq = tasks.event_seq + 1
        WHERE id = p_id RETURNING * INTO t;
        UPDATE messages SET status = 'failed', updated_at = clock_timestamp()
        WHERE task_id = p_id AND role = 'assistant' AND status <> 'completed';
        RETURN QUERY SELECT 'cancelled', t.fence, t.attempts, t.max_attempts, NULL::jsonb,
            NULL::jsonb, t.user_id, t.chat_id, t.created_at, t.event_seq, NULL::uuid;
        RETURN;
    END IF;

    IF t.attempts >= t.max_attempts THEN
        UPDATE tasks SET status = 'failed', completed_at = now(), updated_at = now(),
            event_seq = tasks.event_seq + 1, fence = tasks.fence + 1,
            error = jsonb_build_object('code', 'worker_lost', 'retryable', false, 'message',
                format('the worker handling it was lost %s times', t.attempts))
        WHERE id = p_id RETURNING * INTO t;
        UPDATE messages SET status = 'failed', updated_at = clock_timestamp()
        WHERE task_id = p_id AND role = 'assistant';
        INSERT INTO outbox (task_id, queue, attempt, kind, headers)
        VALUES (p_id, p_queue || '.dlq', t.attempts, 'dead_letter',
                jsonb_build_object('x-taskfleet-reason', 'max_attempts: worker lost',
                                   'x-taskfleet-error', 'worker_lost'));
        RETURN QUERY SELECT 'exhausted', t.fence, t.attempts, t.max_attempts, NULL::jsonb,
            NULL::jsonb, t.user_id, t.chat_id, t.created_at, t.event_seq, NULL::uuid;
        RETURN;
    END IF;

    IF p_user_limit > 0 AND t.status <> 'processing' THEN
        -- Serialise claims per user and type, so two workers cannot both take the last slot.
        PERFORM pg_advisory_xact_lock(hashtext('tf-user:' || t.type), hashtext(t.user_id));
        SELECT count(*) INTO running FROM tasks r
        WHERE r.user_id = t.user_id AND r.type = t.type AND r.status = 'processing'
          AND r.id <> p_id;
        IF running >= p_user_limit THEN
            INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
            VALUES (p_id, p_queue, p_attempt, 'throttle',
                    now() + make_interval(secs => p_throttle_s));
            RETURN QUERY SELECT 'throttled', t.fence, t.attempts, t.max_attempts, NULL::jsonb,
                NULL::jsonb, t.user_id, t.chat_id, t.created_at, t.event_seq, NULL::uuid;
            RETURN;
        END IF;
    END IF;

    UPDATE tasks SET status = 'processing', attempts = tasks.attempts + 1,
        fence = tasks.fence + 1, started_at = coalesce(tasks.started_at, now()),
        next_attempt_at = NULL, updated_at = now(), event_seq = tasks.event_seq + 1,
        holder = p_holder, held_copy = p_copy, deadline_at = due
    WHERE id = p_id
    RETURNING * INTO t;
    RETURN QUERY SELECT 'claimed', t.fence, t.attempts, t.max_attempts, t.checkpoint,
        t.input, t.user_id, t.chat_id, t.created_at, t.event_seq,
        (SELECT m.id FROM messages m WHERE m.task_id = p_id AND m.role = 'assistant');
END;
$$;

-- The claim of workers that do not name their copy and holder yet (a rolling upgrade).
CREATE OR REPLACE FUNCTION tf_claim(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_payload jsonb,
    p_attempt integer, p_redelivered boolean, p_queue text, p_max_attempts integer,
    p_user_limit integer, p_throttle_s double precision
) RETURNS TABLE (
    verdict text, fence bigint, attempts integer, max_attempts integer, checkpoint jsonb,
    input jsonb, user_id text, chat_id text, created_at timestamptz, event_seq bigint,
    message_id uuid
) LANGUAGE sql AS $$
    SELECT * FROM tf_claim(p_id, p_type, p_user_id, p_chat_id, p_payload, p_attempt,
                           p_redelivered, p_queue, p_max_attempts, p_user_limit, p_throttle_s,
                           NULL::text, NULL::uuid, NULL::double precision)
$$;

-- Hand a task back without counting the attempt (a graceful stop): queued again, and an
-- outbox row due at once carries its next message, so the runner acknowledges the one it
-- held instead of returning it (a returned copy would be one attempt behind the row).
-- Returns the event_seq, NULL when the fence is stale.
CREATE OR REPLACE FUNCTION tf_release(p_id uuid, p_fence bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    UPDATE tasks SET status = 'queued', attempts = greatest(attempts - 1, 0), updated_at = now(),
        event_seq = event_seq + 1, fence = fence + 1, holder = NULL, held_copy = NULL,
        deadline_at = NULL
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO outbox (task_id, queue, attempt, kind)
    VALUES (p_id, tf_queue_of(t.type), t.attempts + 1, 'task');
    RETURN t.event_seq;
END;
$$;

-- processing -> waiting with its children (0007's tf_wait), answering the children's outbox
-- row ids in the order given, so that the runner forgets exactly the rows it published.
CREATE FUNCTION tf_wait_for(
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
    INSERT INTO tasks (id, type, user_id, chat_id, parent_id, input, max_attempts)
    SELECT c.id, c.type, t.user_id, t.chat_id, p_id, c.input, c.max_attempts
    FROM jsonb_to_recordset(p_children) AS c(id uuid, type text, input jsonb,
                                              max_attempts integer);
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

-- tf_wait as workers of the previous version call it (a rolling upgrade).
CREATE OR REPLACE FUNCTION tf_wait(
    p_id uuid, p_fence bigint, p_checkpoint jsonb, p_children jsonb, p_grace_s double precision
) RETURNS bigint LANGUAGE sql AS $$
    SELECT w.event_seq FROM tf_wait_for(p_id, p_fence, p_checkpoint, p_children, p_grace_s) w
$$;

-- Cancel (0005). The outbox rows it drops are taken with SKIP LOCKED: a row the relay is
-- publishing right now is the relay's (its copy is settled by the claim, the task being
-- cancelled). Waiting for it would invert the relay's lock order (outbox row, then task)
-- and deadlock.
CREATE OR REPLACE FUNCTION tf_request_cancel(p_id uuid)
RETURNS TABLE (outcome text, event_seq bigint) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', 0::bigint;
        RETURN;
    END IF;
    IF t.status IN ('completed', 'failed', 'cancelled') THEN
        RETURN QUERY SELECT 'terminal', t.event_seq;
        RETURN;
    END IF;
    IF t.status = 'processing' THEN
        UPDATE tasks SET cancel_requested = true, updated_at = now() WHERE id = p_id;
        RETURN QUERY SELECT 'requested', t.event_seq;
        RETURN;
    END IF;
    UPDATE tasks SET status = 'cancelled', cancel_requested = true, completed_at = now(),
        updated_at = now(), event_seq = tasks.event_seq + 1
    WHERE id = p_id RETURNING * INTO t;
    UPDATE messages SET status = 'failed', updated_at = clock_timestamp()
    WHERE task_id = p_id AND role = 'assistant' AND status <> 'completed';
    DELETE FROM outbox WHERE id IN (
        SELECT o.id FROM outbox o WHERE o.task_id = p_id AND o.kind IN ('task', 'retry', 'throttle')
        FOR UPDATE SKIP LOCKED);
    RETURN QUERY SELECT 'cancelled', t.event_seq;
END;
$$;

-- Run a failed or cancelled task again (0005), now answering its outbox row's id.
DROP FUNCTION tf_rerun(uuid, text, double precision);
CREATE FUNCTION tf_rerun(p_id uuid, p_queue text, p_due_s double precision)
RETURNS TABLE (outcome text, event_seq bigint, outbox_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
    row_id bigint;
BEGIN
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', 0::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF t.status NOT IN ('failed', 'cancelled') THEN
        RETURN QUERY SELECT 'conflict', t.event_seq, NULL::bigint;
        RETURN;
    END IF;
    UPDATE tasks SET status = 'queued', attempts = 0, error = NULL, output = NULL,
        cancel_requested = false, completed_at = NULL, next_attempt_at = NULL, progress = 0,
        stage = NULL, status_message = NULL, updated_at = now(),
        event_seq = tasks.event_seq + 1, holder = NULL, held_copy = NULL, deadline_at = NULL
    WHERE id = p_id RETURNING * INTO t;
    UPDATE messages SET status = 'pending', content = '', updated_at = clock_timestamp()
    WHERE task_id = p_id AND role = 'assistant';
    DELETE FROM outbox WHERE id IN (
        SELECT o.id FROM outbox o WHERE o.task_id = p_id AND o.kind <> 'dead_letter'
        FOR UPDATE SKIP LOCKED);
    INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
    VALUES (p_id, p_queue, 1, 'task', now() + make_interval(secs => p_due_s))
    RETURNING id INTO row_id;
    RETURN QUERY SELECT 'queued', t.event_seq, row_id;
END;
$$;

-- A chat submission (0014), now answering its outbox row's id.
DROP FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text, text,
                             double precision, text, uuid, integer, integer);
CREATE FUNCTION tf_submit_chat(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_parent_id uuid, p_input jsonb,
    p_max_attempts integer, p_idempotency_key text, p_queue text, p_grace_s double precision,
    p_content text, p_message_id uuid, p_per_minute integer, p_max_waiting integer
) RETURNS TABLE (task_id uuid, outbox_id bigint, submissions integer, waiting bigint,
                 window_left_s double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    q record;
    inserted uuid;
    row_id bigint;
BEGIN
    PERFORM set_config('role', 'taskfleet_app', true);
    PERFORM set_config('taskfleet.user_id', p_user_id, true);
    SELECT * INTO q FROM tf_count_submission(p_user_id);
    IF q.submissions <= p_per_minute AND q.waiting < p_max_waiting THEN
        INSERT INTO tasks (id, type, user_id, chat_id, parent_id, input, max_attempts,
                           idempotency_key)
        VALUES (p_id, p_type, p_user_id, p_chat_id, p_parent_id, p_input, p_max_attempts,
                p_idempotency_key)
        ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id INTO inserted;
        IF inserted IS NOT NULL THEN
            INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
            VALUES (inserted, p_queue, 1, 'task', now() + make_interval(secs => p_grace_s))
            RETURNING id INTO row_id;
            INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)
            VALUES (gen_random_uuid(), p_chat_id, p_user_id, 'user', p_content, 'completed',
                    inserted),
                   (p_message_id, p_chat_id, p_user_id, 'assistant', '', 'pending', inserted);
        END IF;
    END IF;
    RETURN QUERY SELECT inserted, row_id, q.submissions, q.waiting, q.window_left_s;
END;
$$;

REVOKE EXECUTE ON FUNCTION tf_submit_chat FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_chat TO taskfleet_service, taskfleet_admin;

-- The reconciler's repairs (taskfleet/reconciler.py). Each locks what it repairs with SKIP
-- LOCKED (a task being claimed or written right now is not lost), changes it, and answers
-- one row per repair for the caller's events, metrics and logs.

-- Queued or retrying tasks that are due, have no outbox row and have not changed for
-- p_after_s: their message was lost. A new one goes out through the outbox, with the next
-- attempt number (the claim settles any copy that turns up after all as a duplicate). A
-- queue in p_busy has messages waiting, maybe this task's: its tasks are given p_backlog_s.
CREATE FUNCTION tf_reconcile_lost(p_after_s double precision, p_busy text[],
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

-- Waiting parents whose children are all terminal, unchanged for p_after_s: the resume that
-- the last child's trigger (0007) queues was lost. Resume them the same way.
CREATE FUNCTION tf_reconcile_waiting(p_after_s double precision, p_limit integer)
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

-- Running tasks whose holder is gone, or that no heartbeat holds (p_holders: trust the
-- registry; the caller passes false right after its own outage, when every heartbeat reads
-- stale), or that are past their deadline by p_grace_s. Handed over: queued with the next
-- attempt's message, the fence moved on (a holder that still lives can no longer write); or,
-- attempts spent, failed with the reason's code and dead-lettered. `reason`:
--   holder_gone    its holder is lost or stopped in the registry (or has no row)
--   not_held       its holder lives, but a heartbeat a whole interval after the task's last
--                  change does not list it (the holder lost track of it)
--   past_deadline  its deadline passed p_grace_s ago
CREATE FUNCTION tf_reconcile_running(p_holders boolean, p_grace_s double precision,
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
            UPDATE messages SET status = 'failed', updated_at = clock_timestamp()
            WHERE task_id = t.id AND role = 'assistant';
            INSERT INTO outbox (task_id, queue, attempt, kind, headers)
            VALUES (t.id, queue || '.dlq', t.attempts, 'dead_letter',
                    jsonb_build_object('x-taskfleet-reason', 'max_attempts: ' || why,
                                       'x-taskfleet-error', code));
        END IF;
        RETURN QUERY SELECT t.id, t.type, t.user_id, t.chat_id, t.status, t.event_seq, why;
    END LOOP;
END;
$$;

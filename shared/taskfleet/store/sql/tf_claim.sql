-- Claim a delivery. Verdicts:
--   claimed    run it; `fence` is the token for every later write
--   duplicate  terminal or waiting; scheduled and not yet due (a message that is not its
--              own: its relay publishes it at run_at); a stale copy of an earlier attempt;
--              or a copy of a task that a live holder runs
--   unknown    no such task, and its type may not create one from a message: only a chat
--              message does (DESIGN.md §5); anything else is forged or outlived its task
--   mismatch   the message names a task of another user or type (untrusted input)
--   cancelled  cancel was requested before it ran; it is now cancelled
--   exhausted  its attempts are spent (its workers died every time); now failed
--   throttled  the user is at the concurrency limit, or the task's rate limit has no token
--              (tf_take_token); put back via the outbox, no attempt used
--
-- A running task is taken over only when its holder has really lost it: the broker
-- redelivered the very copy the holder claimed (the broker only does that once the holder's
-- channel is gone or it handed the message back), or the holder's process is gone from the
-- worker registry. Any other copy (a relay's re-publish racing a slow confirm, a copy
-- another worker handed back) is a duplicate while the holder lives.
--
-- p_traceparent: the message's W3C traceparent while tracing is on (else NULL). A row this
-- claim creates (a chat message a backend published straight to the queue) keeps it, so
-- that the task's later messages (retries, put-backs, its resume) join the backend's trace.
CREATE OR REPLACE FUNCTION tf_claim(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_payload jsonb,
    p_attempt integer, p_redelivered boolean, p_queue text, p_max_attempts integer,
    p_user_limit integer, p_throttle_s double precision,
    p_copy text, p_holder uuid, p_deadline_s double precision, p_traceparent text
) RETURNS TABLE (
    verdict text, fence bigint, attempts integer, max_attempts integer, checkpoint jsonb,
    input jsonb, user_id text, chat_id text, created_at timestamptz, event_seq bigint,
    message_id uuid
) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
    running integer;
    wait_s double precision;
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
        -- A rate-limited type takes the general path below, where its token is taken.
        IF (p_user_limit <= 0 OR running < p_user_limit)
           AND NOT EXISTS (SELECT 1 FROM rate_limits WHERE key = p_type) THEN
            INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts, status, attempts,
                               fence, started_at, event_seq, holder, held_copy, deadline_at,
                               traceparent)
            VALUES (p_id, p_type, p_user_id, p_chat_id, p_payload, p_max_attempts, 'processing',
                    1, 1, now(), 1, p_holder, p_copy, due, p_traceparent)
            ON CONFLICT (id) DO NOTHING
            RETURNING * INTO t;
            IF FOUND THEN
                assistant := tf_chat_open(p_id, p_chat_id, p_user_id,
                                          coalesce(p_payload ->> 'content', ''));
                RETURN QUERY SELECT 'claimed', t.fence, t.attempts, t.max_attempts, t.checkpoint,
                    t.input, t.user_id, t.chat_id, t.created_at, t.event_seq, assistant;
                RETURN;
            END IF;
        ELSE
            INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts, traceparent)
            VALUES (p_id, p_type, p_user_id, p_chat_id, p_payload, p_max_attempts,
                    p_traceparent)
            ON CONFLICT (id) DO NOTHING
            RETURNING tasks.id INTO inserted;
            IF inserted IS NOT NULL THEN
                PERFORM tf_chat_open(p_id, p_chat_id, p_user_id,
                                     coalesce(p_payload ->> 'content', ''));
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

    -- A due scheduled task is claimed like a queued one: the relay queues it as it publishes
    -- it, but a relay of the previous version (a rolling upgrade) publishes it as it is.
    IF t.status IN ('completed', 'failed', 'cancelled', 'waiting')
       OR (t.status = 'scheduled' AND t.run_at > now())
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
        PERFORM tf_chat_cancelled(p_id);
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
        PERFORM tf_chat_failed(p_id);
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

    wait_s := tf_take_token(tf_rate_key(t.type, t.input));
    IF wait_s > 0 THEN  -- the fleet-wide rate limit: back when its next token is due
        INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
        VALUES (p_id, p_queue, p_attempt, 'throttle', now() + make_interval(secs => wait_s));
        RETURN QUERY SELECT 'throttled', t.fence, t.attempts, t.max_attempts, NULL::jsonb,
            NULL::jsonb, t.user_id, t.chat_id, t.created_at, t.event_seq, NULL::uuid;
        RETURN;
    END IF;

    UPDATE tasks SET status = 'processing', attempts = tasks.attempts + 1,
        fence = tasks.fence + 1, started_at = coalesce(tasks.started_at, now()),
        next_attempt_at = NULL, updated_at = now(), event_seq = tasks.event_seq + 1,
        holder = p_holder, held_copy = p_copy, deadline_at = due
    WHERE id = p_id
    RETURNING * INTO t;
    RETURN QUERY SELECT 'claimed', t.fence, t.attempts, t.max_attempts, t.checkpoint,
        t.input, t.user_id, t.chat_id, t.created_at, t.event_seq, tf_chat_assistant(p_id);
END;
$$;

-- The claim of workers that do not pass the message's traceparent yet (a rolling upgrade).
CREATE OR REPLACE FUNCTION tf_claim(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_payload jsonb,
    p_attempt integer, p_redelivered boolean, p_queue text, p_max_attempts integer,
    p_user_limit integer, p_throttle_s double precision,
    p_copy text, p_holder uuid, p_deadline_s double precision
) RETURNS TABLE (
    verdict text, fence bigint, attempts integer, max_attempts integer, checkpoint jsonb,
    input jsonb, user_id text, chat_id text, created_at timestamptz, event_seq bigint,
    message_id uuid
) LANGUAGE sql AS $$
    SELECT * FROM tf_claim(p_id, p_type, p_user_id, p_chat_id, p_payload, p_attempt,
                           p_redelivered, p_queue, p_max_attempts, p_user_limit, p_throttle_s,
                           p_copy, p_holder, p_deadline_s, NULL::text)
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
                           NULL::text, NULL::uuid, NULL::double precision, NULL::text)
$$;

-- A chat submission in one round trip, still as its user under row security (migrations/0012).
-- It takes taskfleet_app and the user with set_config(..., true), which is SET LOCAL: both
-- end with the caller's transaction. Its statements are planned and checked as that role, so
-- the policies hold for them as for any user transaction (taskfleet.store.tenancy), without
-- the two extra round trips of `BEGIN; SET LOCAL ...` and `COMMIT`. Only the kernel's and
-- the operators' roles may call it: a user's transaction cannot use it to name another user.
--
-- Within the quotas: the task, its outbox row (due after the grace: the API publishes it
-- itself right after, and the row's id is answered), the user's message and the assistant's
-- placeholder. No task when the idempotency key names one of the user's, or when over a
-- quota; the counts say which. The task carries the backend's metadata and the digest of the
-- request an idempotency key was first sent with (migrations/0016).
--
-- With p_run_at (a delayed task, docs/scheduling.md) the task is `scheduled` and its outbox row
-- due at p_run_at: the relay publishes it then, and the API does not publish it itself.
-- p_priority is the task's level (migrations/0020, docs/priorities.md); p_traceparent the W3C
-- trace context of the request, NULL with tracing off (migrations/0029): the relay puts it on
-- every message of the task it publishes. With p_callback_id, the task's `callback_url`
-- (migrations/0028): its own webhook endpoint, with the task, for its end only, its signing
-- secret sealed by the caller to p_callback_id.
CREATE OR REPLACE FUNCTION tf_submit_chat(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_parent_id uuid, p_input jsonb,
    p_max_attempts integer, p_idempotency_key text, p_queue text, p_grace_s double precision,
    p_content text, p_message_id uuid, p_per_minute integer, p_max_waiting integer,
    p_metadata jsonb, p_request_digest text, p_run_at timestamptz, p_priority text,
    p_traceparent text, p_callback_id uuid, p_callback_url text, p_callback_secret jsonb
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
                           idempotency_key, metadata, request_digest, status, run_at, priority,
                           traceparent)
        VALUES (p_id, p_type, p_user_id, p_chat_id, p_parent_id, p_input, p_max_attempts,
                p_idempotency_key, coalesce(p_metadata, '{}'::jsonb), p_request_digest,
                CASE WHEN p_run_at IS NULL THEN 'queued' ELSE 'scheduled' END, p_run_at,
                coalesce(p_priority, 'normal'), p_traceparent)
        ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id INTO inserted;
        IF inserted IS NOT NULL THEN
            INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
            VALUES (inserted, p_queue, 1, 'task',
                    coalesce(p_run_at, now() + make_interval(secs => p_grace_s)))
            RETURNING id INTO row_id;
            INSERT INTO messages (id, chat_id, user_id, role, content, status, task_id)
            VALUES (tf_uuid7(), p_chat_id, p_user_id, 'user', p_content, 'completed',
                    inserted),
                   (p_message_id, p_chat_id, p_user_id, 'assistant', '', 'pending', inserted);
            IF p_callback_id IS NOT NULL THEN
                INSERT INTO webhook_endpoints (id, user_id, url, events, secret, task_id)
                VALUES (p_callback_id, p_user_id, p_callback_url,
                        ARRAY['task.completed', 'task.failed', 'task.cancelled'],
                        p_callback_secret, inserted);
            END IF;
        END IF;
    END IF;
    RETURN QUERY SELECT inserted, row_id, q.submissions, q.waiting, q.window_left_s;
END;
$$;

-- The 18-argument call of API replicas older than 0028, during a rolling upgrade: no trace,
-- no callback.
CREATE OR REPLACE FUNCTION tf_submit_chat(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_parent_id uuid, p_input jsonb,
    p_max_attempts integer, p_idempotency_key text, p_queue text, p_grace_s double precision,
    p_content text, p_message_id uuid, p_per_minute integer, p_max_waiting integer,
    p_metadata jsonb, p_request_digest text, p_run_at timestamptz, p_priority text
) RETURNS TABLE (task_id uuid, outbox_id bigint, submissions integer, waiting bigint,
                 window_left_s double precision)
LANGUAGE sql AS $$
    SELECT * FROM tf_submit_chat(p_id, p_type, p_user_id, p_chat_id, p_parent_id, p_input,
        p_max_attempts, p_idempotency_key, p_queue, p_grace_s, p_content, p_message_id,
        p_per_minute, p_max_waiting, p_metadata, p_request_digest, p_run_at, p_priority,
        NULL::text, NULL::uuid, NULL::text, NULL::jsonb)
$$;

-- The 17-argument call of API replicas older than 0020, during a rolling upgrade (and the
-- schedule runner's, whose runs no request made: no trace): normal.
CREATE OR REPLACE FUNCTION tf_submit_chat(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_parent_id uuid, p_input jsonb,
    p_max_attempts integer, p_idempotency_key text, p_queue text, p_grace_s double precision,
    p_content text, p_message_id uuid, p_per_minute integer, p_max_waiting integer,
    p_metadata jsonb, p_request_digest text, p_run_at timestamptz
) RETURNS TABLE (task_id uuid, outbox_id bigint, submissions integer, waiting bigint,
                 window_left_s double precision)
LANGUAGE sql AS $$
    SELECT * FROM tf_submit_chat(p_id, p_type, p_user_id, p_chat_id, p_parent_id, p_input,
        p_max_attempts, p_idempotency_key, p_queue, p_grace_s, p_content, p_message_id,
        p_per_minute, p_max_waiting, p_metadata, p_request_digest, p_run_at, 'normal',
        NULL::text, NULL::uuid, NULL::text, NULL::jsonb)
$$;

-- The 14-argument call of API replicas older than 0016, during a rolling upgrade: no
-- metadata, no digest, no delay.
CREATE OR REPLACE FUNCTION tf_submit_chat(
    p_id uuid, p_type text, p_user_id text, p_chat_id text, p_parent_id uuid, p_input jsonb,
    p_max_attempts integer, p_idempotency_key text, p_queue text, p_grace_s double precision,
    p_content text, p_message_id uuid, p_per_minute integer, p_max_waiting integer
) RETURNS TABLE (task_id uuid, outbox_id bigint, submissions integer, waiting bigint,
                 window_left_s double precision)
LANGUAGE sql AS $$
    SELECT * FROM tf_submit_chat(p_id, p_type, p_user_id, p_chat_id, p_parent_id, p_input,
        p_max_attempts, p_idempotency_key, p_queue, p_grace_s, p_content, p_message_id,
        p_per_minute, p_max_waiting, '{}'::jsonb, NULL::text, NULL::timestamptz, 'normal',
        NULL::text, NULL::uuid, NULL::text, NULL::jsonb)
$$;

REVOKE EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer, jsonb, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer, jsonb, text, timestamptz)
    TO taskfleet_service, taskfleet_admin;
REVOKE EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer) TO taskfleet_service, taskfleet_admin;
REVOKE EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer, jsonb, text, timestamptz, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer, jsonb, text, timestamptz, text)
    TO taskfleet_service, taskfleet_admin;
REVOKE EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer, jsonb, text, timestamptz, text, text,
    uuid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_chat(uuid, text, text, text, uuid, jsonb, integer, text,
    text, double precision, text, uuid, integer, integer, jsonb, text, timestamptz, text, text,
    uuid, text, jsonb) TO taskfleet_service, taskfleet_admin;

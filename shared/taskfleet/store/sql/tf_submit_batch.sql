-- A batch of chat messages in one statement (taskfleet.data.batches), as its user under row
-- security, the way tf_submit_chat submits one: the batch row, every member task with its
-- outbox row (due after the grace, or at p_run_at for a delayed batch, its members
-- `scheduled`), and each member's user message and assistant placeholder (tf_chat_open, in
-- the members' order, answered as message_id). The batch counts
-- as as many submissions as it has members in the user's minute, and must fit whole under
-- the waiting limit: all of it or nothing, and the counts say why not. One row per member
-- (task_id NULL: nothing was stored). Every member keeps p_traceparent, the request's W3C trace
-- context (NULL with tracing off, migrations/0029), for the messages the relay publishes.
CREATE OR REPLACE FUNCTION tf_submit_batch(
    p_batch_id uuid, p_user_id text, p_ids uuid[], p_chat_ids text[], p_contents text[],
    p_max_attempts integer, p_queue text, p_grace_s double precision, p_run_at timestamptz,
    p_per_minute integer, p_max_waiting integer, p_priority text, p_traceparent text
) RETURNS TABLE (task_id uuid, outbox_id bigint, message_id uuid, submissions integer,
                 waiting bigint, window_left_s double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n integer := cardinality(p_ids);
    counted integer;
    queued bigint;
    assistants uuid[] := '{}';
BEGIN
    PERFORM set_config('role', 'taskfleet_app', true);
    PERFORM set_config('taskfleet.user_id', p_user_id, true);
    INSERT INTO submission_counts AS s (user_id, window_start, submissions)
    VALUES (p_user_id, date_trunc('minute', now()), n)
    ON CONFLICT (user_id, window_start) DO UPDATE SET submissions = s.submissions + n
    RETURNING s.submissions INTO counted;
    SELECT count(*) INTO queued FROM tasks t
    WHERE t.user_id = p_user_id AND t.status IN ('queued', 'retrying');
    IF counted > p_per_minute OR queued + n > p_max_waiting THEN
        RETURN QUERY SELECT NULL::uuid, NULL::bigint, NULL::uuid, counted, queued,
            extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())
              ::double precision;
        RETURN;
    END IF;
    INSERT INTO batches (id, user_id, total, unfinished) VALUES (p_batch_id, p_user_id, n, n);
    INSERT INTO tasks (id, type, user_id, chat_id, input, max_attempts, status, run_at, batch_id,
                       priority, traceparent)
    SELECT m.id, 'chat_message', p_user_id, m.chat_id, jsonb_build_object('content', m.content),
           p_max_attempts, CASE WHEN p_run_at IS NULL THEN 'queued' ELSE 'scheduled' END,
           p_run_at, p_batch_id, coalesce(p_priority, 'normal'), p_traceparent
    FROM unnest(p_ids, p_chat_ids, p_contents) AS m(id, chat_id, content);
    FOR i IN 1 .. n LOOP
        assistants := assistants || tf_chat_open(p_ids[i], p_chat_ids[i], p_user_id,
                                                 p_contents[i]);
    END LOOP;
    RETURN QUERY
    WITH sent AS (
        INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
        SELECT m.id, p_queue, 1, 'task',
               coalesce(p_run_at, now() + make_interval(secs => p_grace_s))
        FROM unnest(p_ids) AS m(id)
        RETURNING outbox.task_id, outbox.id
    )
    SELECT sent.task_id, sent.id, m.assistant, counted, queued, 0::double precision
    FROM sent JOIN unnest(p_ids, assistants) AS m(id, assistant) ON m.id = sent.task_id;
END;
$$;

-- The 12-argument call of API replicas older than 0029, during a rolling upgrade: no trace.
CREATE OR REPLACE FUNCTION tf_submit_batch(
    p_batch_id uuid, p_user_id text, p_ids uuid[], p_chat_ids text[], p_contents text[],
    p_max_attempts integer, p_queue text, p_grace_s double precision, p_run_at timestamptz,
    p_per_minute integer, p_max_waiting integer, p_priority text
) RETURNS TABLE (task_id uuid, outbox_id bigint, message_id uuid, submissions integer,
                 waiting bigint, window_left_s double precision)
LANGUAGE sql AS $$
    SELECT * FROM tf_submit_batch(p_batch_id, p_user_id, p_ids, p_chat_ids, p_contents,
        p_max_attempts, p_queue, p_grace_s, p_run_at, p_per_minute, p_max_waiting, p_priority,
        NULL::text)
$$;

-- The 11-argument call of API replicas older than 0020, during a rolling upgrade: normal.
CREATE OR REPLACE FUNCTION tf_submit_batch(
    p_batch_id uuid, p_user_id text, p_ids uuid[], p_chat_ids text[], p_contents text[],
    p_max_attempts integer, p_queue text, p_grace_s double precision, p_run_at timestamptz,
    p_per_minute integer, p_max_waiting integer
) RETURNS TABLE (task_id uuid, outbox_id bigint, message_id uuid, submissions integer,
                 waiting bigint, window_left_s double precision)
LANGUAGE sql AS $$
    SELECT * FROM tf_submit_batch(p_batch_id, p_user_id, p_ids, p_chat_ids, p_contents,
        p_max_attempts, p_queue, p_grace_s, p_run_at, p_per_minute, p_max_waiting, 'normal',
        NULL::text)
$$;

REVOKE EXECUTE ON FUNCTION tf_submit_batch(uuid, text, uuid[], text[], text[], integer, text,
    double precision, timestamptz, integer, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_batch(uuid, text, uuid[], text[], text[], integer, text,
    double precision, timestamptz, integer, integer, text) TO taskfleet_service, taskfleet_admin;
REVOKE EXECUTE ON FUNCTION tf_submit_batch(uuid, text, uuid[], text[], text[], integer, text,
    double precision, timestamptz, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_batch(uuid, text, uuid[], text[], text[], integer, text,
    double precision, timestamptz, integer, integer) TO taskfleet_service, taskfleet_admin;
REVOKE EXECUTE ON FUNCTION tf_submit_batch(uuid, text, uuid[], text[], text[], integer, text,
    double precision, timestamptz, integer, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tf_submit_batch(uuid, text, uuid[], text[], text[], integer, text,
    double precision, timestamptz, integer, integer, text, text)
    TO taskfleet_service, taskfleet_admin;

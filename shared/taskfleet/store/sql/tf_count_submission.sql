-- Count a submission in its user's minute and count the user's waiting tasks
-- (taskfleet.quotas): the same statement for the API's check and for tf_submit_chat.
CREATE OR REPLACE FUNCTION tf_count_submission(p_user_id text)
RETURNS TABLE (submissions integer, waiting bigint, window_left_s double precision)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH hit AS (
        INSERT INTO submission_counts AS s (user_id, window_start, submissions)
        VALUES (p_user_id, date_trunc('minute', now()), 1)
        ON CONFLICT (user_id, window_start) DO UPDATE SET submissions = s.submissions + 1
        RETURNING s.submissions
    )
    SELECT (SELECT h.submissions FROM hit h),
           (SELECT count(*) FROM tasks t
            WHERE t.user_id = p_user_id AND t.status IN ('queued', 'retrying')),
           extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())
             ::double precision;
END;
$$;

-- Many completions at once (the coalescer's batch, taskfleet.store.transitions): what
-- tf_complete does for each, set-based. PostgreSQL sets up every statement anew when it runs
-- it, the table's check constraints and its triggers' WHEN clauses read again from their text
-- each time, so one update for the batch rather than one a task saves the most of that
-- (docs/benchmarks.md, "PostgreSQL's share"). It writes the replies itself, in the same
-- statement: it is the one function besides tf_chat_* and the chat submission that writes
-- messages (tests/unit/test_schema_files.py), because the replies as a second statement,
-- through a tf_chat_* function, made the batch 0.74x as fast as this. n is each completion's
-- place in the arrays; seq NULL where its fence is stale. The triggers fire after the
-- statement: two children of one parent ending in one batch each see both ended, and
-- tf_child_finished re-queues the parent once (it locks the parent, then finds it queued).
CREATE OR REPLACE FUNCTION tf_complete_many(
    p_ids uuid[], p_fences bigint[], p_outputs jsonb[], p_replies text[]
) RETURNS TABLE (n bigint, seq bigint) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH x AS (
        SELECT * FROM unnest(p_ids, p_fences, p_outputs, p_replies) WITH ORDINALITY
            AS x(id, fence, output, reply, n)
    ), done AS (
        UPDATE tasks t SET status = 'completed', output = x.output, progress = 1, error = NULL,
            completed_at = now(), updated_at = now(), event_seq = t.event_seq + 1
        -- The status test is a CASE so that no index can serve it: the planner then finds
        -- each task by its id. As `t.status = 'processing'` it may instead read every
        -- processing task through a partial index (tasks_unfinished), dead entries included,
        -- whenever its statistics say there are few: a scan that grows with the table.
        FROM x WHERE t.id = x.id AND t.fence = x.fence
            AND CASE WHEN t.status = 'processing' THEN true ELSE false END
        RETURNING t.id, t.fence, t.event_seq
    ), replied AS (
        UPDATE messages m SET content = x.reply, status = 'completed',
            updated_at = clock_timestamp()
        FROM x JOIN done ON done.id = x.id AND done.fence = x.fence
        WHERE x.reply IS NOT NULL AND m.task_id = x.id AND m.role = 'assistant'
    )
    SELECT x.n, done.event_seq FROM x LEFT JOIN done ON done.id = x.id AND done.fence = x.fence;
END;
$$;

-- Whether the holder of a running task is gone. An unknown holder (claimed by a version
-- that did not record it) is not known to be gone.
CREATE OR REPLACE FUNCTION tf_holder_gone(p_holder uuid) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_holder IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM workers w
        WHERE w.id = p_holder AND tf_worker_live(w.stopped_at, w.heartbeat_at, w.heartbeat_s))
$$;

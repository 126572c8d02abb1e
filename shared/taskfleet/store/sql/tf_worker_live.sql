-- Whether a worker process is alive: heartbeat within 2.5 of its intervals
-- (taskfleet/registry.py LOST_AFTER) and not stopped.
CREATE OR REPLACE FUNCTION tf_worker_live(p_stopped_at timestamptz, p_heartbeat_at timestamptz,
                               p_heartbeat_s double precision)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT p_stopped_at IS NULL
       AND p_heartbeat_at > now() - make_interval(secs => p_heartbeat_s * 2.5)
$$;

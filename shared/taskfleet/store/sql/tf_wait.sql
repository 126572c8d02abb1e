-- tf_wait_for without the outbox row ids, as workers of the previous version call it (a
-- rolling upgrade).
CREATE OR REPLACE FUNCTION tf_wait(
    p_id uuid, p_fence bigint, p_checkpoint jsonb, p_children jsonb, p_grace_s double precision
) RETURNS bigint LANGUAGE sql AS $$
    SELECT w.event_seq FROM tf_wait_for(p_id, p_fence, p_checkpoint, p_children, p_grace_s) w
$$;

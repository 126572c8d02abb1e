-- Resume or restart a failed or cancelled task (the console's recovery view, `taskfleet
-- resume|restart`). Both run it again as tf_rerun does (fresh attempts, fence kept growing):
--   resume:  from its checkpoint, which stays; 'no_checkpoint' when it has none.
--   restart: from scratch: its checkpoint and partial output are cleared first.
-- Outcomes: missing, conflict (not failed nor cancelled), no_checkpoint, queued.
CREATE OR REPLACE FUNCTION tf_recover(
    p_id uuid, p_queue text, p_due_s double precision, p_mode text
) RETURNS TABLE (outcome text, event_seq bigint, outbox_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    IF p_mode NOT IN ('resume', 'restart') THEN
        RAISE EXCEPTION 'tf_recover: unknown mode %', p_mode;
    END IF;
    SELECT * INTO t FROM tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'missing', 0::bigint, NULL::bigint;
        RETURN;
    END IF;
    IF t.status NOT IN ('failed', 'cancelled') THEN
        RETURN QUERY SELECT 'conflict', t.event_seq, NULL::bigint;
        RETURN;
    END IF;
    IF p_mode = 'resume' AND t.checkpoint IS NULL THEN
        RETURN QUERY SELECT 'no_checkpoint', t.event_seq, NULL::bigint;
        RETURN;
    END IF;
    IF p_mode = 'restart' THEN
        UPDATE tasks SET checkpoint = NULL, partial_output = NULL WHERE id = p_id;
    END IF;
    RETURN QUERY SELECT r.outcome, r.event_seq, r.outbox_id FROM tf_rerun(p_id, p_queue, p_due_s) r;
END;
$$;

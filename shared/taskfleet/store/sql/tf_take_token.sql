-- A token from the rate limit of `p_key` (migrations/0025_rate_limits.sql), for a claim: 0 when
-- taken (or when the key has no limit), else the seconds until one is due (nothing taken, and
-- the put-back counted). The bucket's row lock orders the claims of one key across every
-- replica; a key without a limit costs one primary-key probe.
CREATE OR REPLACE FUNCTION tf_take_token(p_key text) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    r rate_limits%ROWTYPE;
    have double precision;
BEGIN
    SELECT * INTO r FROM rate_limits WHERE key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    have := least(r.burst, r.tokens + extract(epoch FROM now() - r.at) * r.per_s);
    IF have >= 1 THEN
        UPDATE rate_limits SET tokens = have - 1, at = now() WHERE key = p_key;
        RETURN 0;
    END IF;
    UPDATE rate_limits SET tokens = have, at = now(), throttled = throttled + 1
    WHERE key = p_key;
    RETURN (1 - have) / r.per_s;
END;
$$;

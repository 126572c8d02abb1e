-- The rate limit a task draws from (tf_take_token, migrations/0025_rate_limits.sql): its
-- tool's for an agent's tool call, else its type's.
CREATE OR REPLACE FUNCTION tf_rate_key(p_type text, p_input jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_type = 'tool_execution' THEN 'tool:' || coalesce(p_input ->> 'name', '')
                ELSE p_type END
$$;

-- Record what an operator does as taskfleet_admin (admin_audit, migrations/0012): the admin
-- row policies show every user's rows only to a transaction that wrote its audit row first.
CREATE OR REPLACE FUNCTION tf_audit(p_actor text, p_action text, p_detail jsonb) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO admin_audit (actor, action, detail) VALUES (p_actor, p_action, p_detail)
    RETURNING id
$$;

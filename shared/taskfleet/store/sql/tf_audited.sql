-- Whether this transaction wrote its admin_audit row: what the admin row policies ask.
-- Called once per statement through an init plan: `(SELECT tf_audited())`.
CREATE OR REPLACE FUNCTION tf_audited() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM admin_audit WHERE xact = txid_current())
$$;

-- The user a taskfleet_app transaction named (SET LOCAL taskfleet.user_id,
-- taskfleet.store.tenancy); NULL when it named none, and then the owner policies show nothing.
CREATE OR REPLACE FUNCTION tf_current_user() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('taskfleet.user_id', true), '')
$$;

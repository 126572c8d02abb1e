-- Tenant isolation enforced by PostgreSQL (docs/security.md). Three roles, none of them the
-- tables' owner, none BYPASSRLS:
--   taskfleet_service  the kernel: claims, transitions, outbox relay, retention, registry.
--                      Every pooled connection runs as it (taskfleet.db.create_pool).
--   taskfleet_app      a user's work: API user routes and handlers. A transaction takes it
--                      with SET LOCAL ROLE and names its user in SET LOCAL taskfleet.user_id
--                      (taskfleet.tenancy); the policies below show it that user's rows only.
--   taskfleet_admin    operator routes and commands. Sees every user's rows, but only in a
--                      transaction that first wrote its admin_audit row (tf_audit).
-- Roles belong to the cluster, not the database: several databases (test runs, tenants) share
-- them, and two migrations may race to create one.

-- Created here when missing (that needs CREATEROLE); roles a superuser made beforehand are
-- used as they are.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['taskfleet_service', 'taskfleet_app', 'taskfleet_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migration made it first
            END;
        END IF;
    END LOOP;
END $$;

-- The login role of DATABASE_URL must be able to take all three (SET ROLE).
DO $$ BEGIN
    EXECUTE format('GRANT taskfleet_service, taskfleet_app, taskfleet_admin TO %I', current_user);
EXCEPTION WHEN invalid_grant_operation OR insufficient_privilege THEN
    NULL;  -- already a member; or the roles are a superuser's, who grants them
END $$;

-- Who did what as taskfleet_admin. The admin policies read it: no audit row in this
-- transaction, no rows.
CREATE TABLE admin_audit (
    id      bigserial PRIMARY KEY,
    xact    bigint NOT NULL DEFAULT txid_current(),
    actor   text NOT NULL,
    action  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}',
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admin_audit_xact ON admin_audit (xact);
CREATE INDEX admin_audit_at ON admin_audit (at);

CREATE FUNCTION tf_audit(p_actor text, p_action text, p_detail jsonb) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO admin_audit (actor, action, detail) VALUES (p_actor, p_action, p_detail)
    RETURNING id
$$;

-- Called once per statement through an init plan: `(SELECT tf_audited())`.
CREATE FUNCTION tf_audited() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM admin_audit WHERE xact = txid_current())
$$;

CREATE FUNCTION tf_current_user() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('taskfleet.user_id', true), '')
$$;

GRANT USAGE ON SCHEMA public TO taskfleet_service, taskfleet_app, taskfleet_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO taskfleet_service;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO taskfleet_service, taskfleet_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO taskfleet_admin;
REVOKE UPDATE, DELETE ON admin_audit FROM taskfleet_admin, taskfleet_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    tasks, messages, outbox, documents, document_blobs, document_chunks, cameras, camera_frames,
    camera_analyses, tool_calls, memories, submission_counts
TO taskfleet_app;
GRANT USAGE, SELECT ON SEQUENCE messages_seq_seq, outbox_id_seq, camera_frames_seq_seq TO taskfleet_app;
-- Tables made by later migrations: the kernel and the operators may use them; what a user
-- may see of them each such migration says itself.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO taskfleet_service, taskfleet_admin;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO taskfleet_service, taskfleet_admin;

-- Every user-owned table: FORCE, so that the owner is held to the policies too.
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['tasks', 'messages', 'outbox', 'documents', 'document_blobs',
                               'document_chunks', 'cameras', 'camera_frames', 'camera_analyses',
                               'tool_calls', 'memories', 'submission_counts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY kernel ON %I TO taskfleet_service'
                       ' USING (true) WITH CHECK (true)', tbl);
        EXECUTE format('CREATE POLICY audited ON %I TO taskfleet_admin'
                       ' USING ((SELECT tf_audited())) WITH CHECK ((SELECT tf_audited()))', tbl);
    END LOOP;
    FOREACH tbl IN ARRAY ARRAY['tasks', 'messages', 'documents', 'document_chunks', 'cameras',
                               'camera_frames', 'camera_analyses', 'memories',
                               'submission_counts'] LOOP
        EXECUTE format('CREATE POLICY owner ON %I TO taskfleet_app'
                       ' USING (user_id = tf_current_user())'
                       ' WITH CHECK (user_id = tf_current_user())', tbl);
    END LOOP;
END $$;

-- Rows without a user_id of their own belong to the owner of their task; the subquery is
-- itself held to the tasks policy.
-- An outbox row is written in the statement that inserts its task (one round trip per
-- submission), where the new task is not yet visible to a subquery. So a user's transaction
-- may queue a publish of any task id; that is harmless by design: the relay builds the
-- message from the task row and the claim settles a copy that is not due as a duplicate.
-- Reading and deleting rows stay the owner's.
CREATE POLICY owner ON outbox TO taskfleet_app
    USING (EXISTS (SELECT 1 FROM tasks t WHERE t.id = outbox.task_id))
    WITH CHECK (tf_current_user() IS NOT NULL);
CREATE POLICY owner ON tool_calls TO taskfleet_app
    USING (EXISTS (SELECT 1 FROM tasks t WHERE t.id = tool_calls.task_id))
    WITH CHECK (EXISTS (SELECT 1 FROM tasks t WHERE t.id = tool_calls.task_id));
-- A blob's key names its owner: documents/<user_id>/<document id> (taskfleet.documents).
CREATE POLICY owner ON document_blobs TO taskfleet_app
    USING (split_part(key, '/', 2) = tf_current_user())
    WITH CHECK (split_part(key, '/', 2) = tf_current_user());

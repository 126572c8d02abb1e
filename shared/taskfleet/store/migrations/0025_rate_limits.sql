-- Fleet-wide rate limits (docs/scheduling.md#rate-limits): a token bucket per key, `tool:<name>`
-- for an agent's tool calls, the task type for the others (`document_processing`), kept in
-- the database so that every replica of every worker draws from the same bucket. The claim
-- takes a token (store/sql/tf_take_token.sql) or puts the message back for when one is due,
-- without using an attempt.
CREATE TABLE rate_limits (
    key        text PRIMARY KEY CHECK (key ~ '^[a-z_]+(:[A-Za-z0-9_.-]+)?$'),
    per_s      double precision NOT NULL CHECK (per_s > 0),
    burst      integer NOT NULL CHECK (burst >= 1),
    -- The bucket: `tokens` as of `at` (refilled at per_s since then, up to burst).
    tokens     double precision NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    -- Claims put back for want of a token, since the limit was set.
    throttled  bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE rate_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_limits FORCE ROW LEVEL SECURITY;
CREATE POLICY kernel ON rate_limits TO taskfleet_service USING (true) WITH CHECK (true);
CREATE POLICY audited ON rate_limits TO taskfleet_admin
    USING ((SELECT tf_audited())) WITH CHECK ((SELECT tf_audited()));
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits TO taskfleet_service, taskfleet_admin;

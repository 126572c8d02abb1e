-- Webhooks (docs/integrating.md#webhooks): a user's endpoints, and one delivery row per
-- event and endpoint, written in the transaction that made the event (a task's end, a
-- batch's `batch.completed` outbox row), so that no event is lost whatever process dies.
-- The API's deliverer (taskfleet.data.webhook_sender) claims due rows with FOR UPDATE SKIP
-- LOCKED and POSTs them, signed as Standard Webhooks says.

CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL,
    url         text NOT NULL,
    events      text[] NOT NULL CHECK (cardinality(events) > 0 AND events <@ ARRAY[
                    'task.completed', 'task.failed', 'task.cancelled', 'batch.completed']),
    -- The signing secret (`whsec_...`), sealed to this row (taskfleet.security.crypto):
    -- `taskfleet rotate-key` re-seals it like every other sealed value.
    secret      jsonb NOT NULL,
    -- The secret before the last rotation, sealed too: it signs beside the new one until
    -- `previous_until`, so that a receiver can move to the new one without a gap.
    previous_secret jsonb,
    previous_until  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id, created_at DESC);

CREATE TABLE webhook_deliveries (
    -- Also the `webhook-id` header: the same for every attempt of this delivery.
    id              uuid PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    -- The task the event is about (a batch's: its last member): retention deletes the
    -- deliveries with their task.
    task_id         uuid REFERENCES tasks (id) ON DELETE CASCADE,
    event           text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- When a pending row is due: a claim moves it past the attempt's lease, so that a
    -- deliverer that dies mid-attempt leaves it due again (never lost; at most a duplicate).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Since when it is being delivered (created, or redelivered): its deadline counts from it.
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    response_status integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_task ON webhook_deliveries (task_id);

-- A user's endpoints and deliveries are theirs alone, as their tasks are (migrations/0012).
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['webhook_endpoints', 'webhook_deliveries'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', tbl);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', tbl);
        EXECUTE format('CREATE POLICY kernel ON %I TO taskfleet_service'
                       ' USING (true) WITH CHECK (true)', tbl);
        EXECUTE format('CREATE POLICY audited ON %I TO taskfleet_admin'
                       ' USING ((SELECT tf_audited())) WITH CHECK ((SELECT tf_audited()))', tbl);
        EXECUTE format('CREATE POLICY owner ON %I TO taskfleet_app'
                       ' USING (user_id = tf_current_user())'
                       ' WITH CHECK (user_id = tf_current_user())', tbl);
    END LOOP;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints TO taskfleet_app;
-- INSERT: a user's own cancel ends a task in the user's transaction, and the trigger below
-- writes the deliveries there.
GRANT SELECT, INSERT, UPDATE ON webhook_deliveries TO taskfleet_app;

-- The current definitions are store/sql/tf_webhook_task_ended.sql and tf_webhook_event.sql;
-- these are what the triggers need to be created.
CREATE FUNCTION tf_webhook_task_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END;
$$;

CREATE FUNCTION tf_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END;
$$;

-- A task the user submitted (not an agent's tool call inside one) turned terminal.
CREATE TRIGGER webhook_task_ended AFTER UPDATE OF status ON tasks
FOR EACH ROW WHEN (NEW.parent_id IS NULL
                   AND NEW.status IN ('completed', 'failed', 'cancelled')
                   AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
EXECUTE FUNCTION tf_webhook_task_ended();

-- An event row of the outbox (a batch's `batch.completed`, store/sql/tf_batch_member_ended.sql).
CREATE TRIGGER webhook_event AFTER INSERT ON outbox
FOR EACH ROW WHEN (NEW.kind = 'event')
EXECUTE FUNCTION tf_webhook_event();

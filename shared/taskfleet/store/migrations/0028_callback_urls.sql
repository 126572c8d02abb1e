-- A submission's `callback_url` (docs/integrating.md#a-callback-per-task): a webhook endpoint
-- of its own, for one task (`task_id`: its end) or one batch (`batch_id`: its
-- `batch.completed`), created in the submission's transaction and deleted with its task or
-- batch. Its deliveries are written and sent as every endpoint's (migrations/0021), with the
-- same signing, retries, deadline and log; it is not one of the user's endpoints
-- (GET /api/webhooks lists neither it nor counts it against the limit).
ALTER TABLE webhook_endpoints
    ADD COLUMN task_id uuid REFERENCES tasks (id) ON DELETE CASCADE,
    ADD COLUMN batch_id uuid REFERENCES batches (id) ON DELETE CASCADE,
    ADD CONSTRAINT webhook_endpoints_one_owner CHECK (task_id IS NULL OR batch_id IS NULL);
-- One callback per task and per batch (an idempotent repeat never adds a second one); also
-- the indexes of the cascades and of the triggers' look-up by task.
CREATE UNIQUE INDEX webhook_endpoints_task ON webhook_endpoints (task_id)
    WHERE task_id IS NOT NULL;
CREATE UNIQUE INDEX webhook_endpoints_batch ON webhook_endpoints (batch_id)
    WHERE batch_id IS NOT NULL;
-- A user's own endpoints, which every task end of theirs is matched against: without the
-- callbacks, however many of those the user's retained tasks have.
DROP INDEX webhook_endpoints_user;
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id, created_at DESC)
    WHERE task_id IS NULL AND batch_id IS NULL;

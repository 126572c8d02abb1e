-- Delayed tasks (docs/scheduling.md): a task submitted with `run_at` or `delay_s` is
-- `scheduled` until then. Its first message is an ordinary outbox row due at `run_at`; the
-- relay moves the task to `queued` when it publishes it (taskfleet.broker.outbox), and the
-- reconciler gives a due scheduled task without an outbox row a new one
-- (store/sql/tf_reconcile_scheduled.sql).

ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('scheduled', 'queued', 'processing', 'retrying', 'waiting',
                      'completed', 'failed', 'cancelled'));

-- When a delayed task is due (NULL: submitted to run at once).
ALTER TABLE tasks ADD COLUMN run_at timestamptz;

-- The reconciler's look for due scheduled tasks: only the scheduled ones are in it.
CREATE INDEX tasks_scheduled ON tasks (run_at) WHERE status = 'scheduled';

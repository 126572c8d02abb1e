-- Retention (taskfleet/retention.py): find old terminal tasks without scanning the table, and
-- check a task's outbox rows without scanning the outbox.
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX IF NOT EXISTS outbox_task ON outbox (task_id);

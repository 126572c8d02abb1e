-- A task's priority (docs/priorities.md): `high`, `normal` or `low`. The level decides the
-- queue its messages go to (`<queue>.high`, `<queue>`, `<queue>.low`): the relay routes every
-- message of the task by it, so a retry, a put-back or a dead letter stays at its level.
-- Existing tasks and those a backend creates with a message of its own are `normal`.
ALTER TABLE tasks ADD COLUMN priority text NOT NULL DEFAULT 'normal'
    CHECK (priority IN ('high', 'normal', 'low'));

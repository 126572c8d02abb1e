-- Per-user submission counts per minute (taskfleet/quotas.py), and an index to count a
-- user's waiting tasks without reading the rest of them.
CREATE TABLE submission_counts (
    user_id      text NOT NULL,
    window_start timestamptz NOT NULL,
    submissions  integer NOT NULL,
    PRIMARY KEY (user_id, window_start)
);

CREATE INDEX tasks_user_waiting ON tasks (user_id) WHERE status IN ('queued', 'retrying');

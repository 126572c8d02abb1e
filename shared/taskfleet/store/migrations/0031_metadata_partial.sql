-- Writes per task (issues 21 and 22): the GIN index on `metadata` took an entry for every
-- version of every task row, although most tasks carry no metadata. A change of status is
-- never a HOT update (status is in the predicates of the partial indexes), so a task that is
-- queued, claimed and completed wrote three GIN entries for an empty object. Now only tasks
-- that have metadata are in it; a listing's `metadata @> ...` filter states the same
-- predicate (data/operations.list_tasks) so that the planner still uses the index.
DROP INDEX IF EXISTS tasks_metadata;
CREATE INDEX tasks_metadata ON tasks USING gin (metadata jsonb_path_ops)
    WHERE metadata <> '{}'::jsonb;

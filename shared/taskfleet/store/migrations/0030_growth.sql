-- Cost as the history grows (issue 21, part 4; docs/benchmarks.md, "Cost as the history
-- grows").
--
-- Every foreign key to tasks has an index led by its column, so that deleting a task
-- (retention, DELETE /api/tasks/{id}) finds the rows that point at it without reading the
-- whole referencing table: PostgreSQL's ON DELETE CASCADE / SET NULL runs one statement per
-- deleted task and per referencing table. Two had none: a camera analysis's task, and a
-- batch's `then` task (0026).
CREATE INDEX IF NOT EXISTS camera_analyses_task ON camera_analyses (task_id);
CREATE INDEX IF NOT EXISTS batches_then ON batches (then_task_id) WHERE then_task_id IS NOT NULL;

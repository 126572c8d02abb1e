-- A batch's `then` (a chord, docs/scheduling.md#batches): a chat task submitted with the batch,
-- `scheduled` with no time (run_at 'infinity', its outbox row likewise) until the batch's last
-- member ends; the trigger that completes the batch (store/sql/tf_batch_member_ended.sql)
-- makes it due then, in the same transaction. It reads its members' outcomes by reference
-- (its input's `after_batch`), not copied into it.
ALTER TABLE batches ADD COLUMN then_task_id uuid REFERENCES tasks (id) ON DELETE SET NULL;

-- Statistics over a window (taskfleet.data.stats, GET /api/stats). A user's window reads
-- tasks_user_created (0001); the fleet's reads this one. BRIN, not a b-tree: tasks are
-- written in created_at order, so a block range summary finds a recent window in a table of
-- millions, and it costs almost nothing on the transitions' writes (every status change
-- writes the row's index entries again, updated_at being indexed).
CREATE INDEX tasks_created_brin ON tasks USING brin (created_at) WITH (autosummarize = on);

-- main carried 0017_2_stats.sql for a while: a BRIN index on tasks.created_at for fleet-wide
-- statistics, which every status change of the message path wrote again. The statistics read
-- the partial indexes of finished, unfinished and scheduled tasks instead
-- (taskfleet.data.stats), and that file is gone; a database that applied it drops the index
-- here (on any other, nothing happens).
DROP INDEX IF EXISTS tasks_created_brin;

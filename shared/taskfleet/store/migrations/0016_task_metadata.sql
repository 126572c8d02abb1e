-- What a backend says of its own tasks (docs/contract.md, "Metadata"): a small object of
-- string values, stored with the task, answered in its body and filterable in listings.
-- And what an idempotent submission was (docs/contract.md, "Idempotency"): a digest of its
-- request, so that the same key sent again with another request is refused (409), not
-- answered with a task made from something else.
ALTER TABLE tasks ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN request_digest text;

-- `metadata.<key>=<value>` in a listing is `metadata @> {"key": "value"}`: jsonb_path_ops
-- answers containment and is the smaller of the two GIN operator classes.
CREATE INDEX tasks_metadata ON tasks USING gin (metadata jsonb_path_ops);

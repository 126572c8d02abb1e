-- The W3C `traceparent` of the span that submitted a task (an API request, a parent's attempt
-- for its children), kept with the task when tracing is on (docs/operations.md#tracing). Every
-- message of the task that the outbox relay publishes (a publish deferred while the broker was
-- away, a retry, a put-back, the resume after its children, a delayed or `then` task made due,
-- the reconciler's repair) carries it, so the worker's spans join that trace as the first
-- message's do. NULL (no default, so adding it rewrites nothing): tracing was off, or no
-- request made the task (a schedule's run): its messages start a trace of their own.
ALTER TABLE tasks ADD COLUMN traceparent text;

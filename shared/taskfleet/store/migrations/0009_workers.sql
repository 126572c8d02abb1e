-- The worker registry: every worker process upserts its row every WORKER_HEARTBEAT_S.
-- A row whose heartbeat is older than 2.5 intervals reads as lost (taskfleet/registry.py).
CREATE TABLE workers (
    id           uuid PRIMARY KEY,
    worker       text NOT NULL,              -- chat, tool, doc, camera
    queue        text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    concurrency  integer NOT NULL,
    heartbeat_s  double precision NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    inflight     uuid[] NOT NULL DEFAULT '{}',
    background   jsonb NOT NULL DEFAULT '{}'  -- supervised task name -> running
);

CREATE INDEX workers_heartbeat ON workers (heartbeat_at DESC);

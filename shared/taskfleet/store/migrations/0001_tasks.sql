-- Task state, chat history and the outbox: the single source of truth (DESIGN.md §4, §6).

CREATE TABLE tasks (
    id               uuid PRIMARY KEY,
    type             text NOT NULL CHECK (type IN ('chat_message', 'tool_execution',
                                                   'document_processing', 'camera_analysis')),
    user_id          text NOT NULL,
    chat_id          text,
    parent_id        uuid REFERENCES tasks (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'processing', 'retrying', 'waiting',
                                       'completed', 'failed', 'cancelled')),
    progress         real NOT NULL DEFAULT 0 CHECK (progress >= 0 AND progress <= 1),
    stage            text,
    status_message   text,
    input            jsonb NOT NULL DEFAULT '{}',
    output           jsonb,
    partial_output   jsonb,
    checkpoint       jsonb,
    error            jsonb,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    next_attempt_at  timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- Fencing token: bumped by every claim; every later write of that attempt must carry it.
    fence            bigint NOT NULL DEFAULT 0,
    -- Bumped by every state change; live events carry event_seq * 1e6 (+ a delta index), so
    -- a client can order them and resume with ?since= (docs/live-updates.md).
    event_seq        bigint NOT NULL DEFAULT 0,
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX tasks_idempotency ON tasks (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
CREATE INDEX tasks_running ON tasks (user_id, type) WHERE status = 'processing';
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE messages (
    id         uuid PRIMARY KEY,
    seq        bigserial NOT NULL,
    chat_id    text NOT NULL,
    user_id    text NOT NULL,
    role       text NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system')),
    content    text NOT NULL DEFAULT '',
    status     text NOT NULL CHECK (status IN ('pending', 'streaming', 'completed', 'failed')),
    task_id    uuid REFERENCES tasks (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- A task has at most one message per role: the worker that adopts a task published straight
-- to chat_tasks creates its rows once, keyed by task_id.
CREATE UNIQUE INDEX messages_task_role ON messages (task_id, role) WHERE task_id IS NOT NULL;
CREATE INDEX messages_chat ON messages (chat_id, seq);

-- Messages to publish. A row is written in the transaction that decides the message and
-- deleted once the broker confirmed it; `available_at` delays retries and put-backs.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    task_id      uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    queue        text NOT NULL,
    attempt      integer NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('task', 'retry', 'throttle', 'dead_letter')),
    headers      jsonb NOT NULL DEFAULT '{}',
    available_at timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX outbox_due ON outbox (available_at);

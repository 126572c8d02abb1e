-- The agent (docs/agent.md): a chat task that waits for its tool calls, the side-effect record
-- that makes a tool with side effects run at most once per call, and the users' memories.

-- The queue a task type is consumed from (constants.QUEUES; the relay adds the namespace).
CREATE OR REPLACE FUNCTION tf_queue_of(p_type text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_type
        WHEN 'chat_message' THEN 'chat_tasks'
        WHEN 'tool_execution' THEN 'tool_executions'
        WHEN 'document_processing' THEN 'document_processing'
        WHEN 'camera_analysis' THEN 'camera_analysis'
    END;
$$;

-- processing -> waiting, fenced, in one transaction with the children it waits for: their
-- task rows (same user and chat as the parent: a handler never names another user) and their
-- outbox rows, due after p_grace_s (the runner publishes them itself right after commit; the
-- relay covers a crash in between). The parent's checkpoint is its agent state.
--
-- The attempt that ends in `waiting` succeeded, so it is given back: max_attempts grows by one.
-- A resume is a claim and counts an attempt like any other, so `max_attempts - attempts`
-- (the failures still allowed) is what a tool round leaves unchanged; a long agent never
-- exhausts its budget by working, only by failing.
CREATE OR REPLACE FUNCTION tf_wait(
    p_id uuid, p_fence bigint, p_checkpoint jsonb, p_children jsonb, p_grace_s double precision
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    t tasks%ROWTYPE;
BEGIN
    IF jsonb_typeof(p_children) <> 'array' OR jsonb_array_length(p_children) = 0 THEN
        RAISE EXCEPTION 'tf_wait: a waiting task needs at least one child';
    END IF;
    UPDATE tasks SET status = 'waiting', checkpoint = p_checkpoint,
        max_attempts = tasks.max_attempts + 1, updated_at = now(),
        event_seq = tasks.event_seq + 1
    WHERE id = p_id AND fence = p_fence AND status = 'processing'
    RETURNING * INTO t;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO tasks (id, type, user_id, chat_id, parent_id, input, max_attempts)
    SELECT c.id, c.type, t.user_id, t.chat_id, p_id, c.input, c.max_attempts
    FROM jsonb_to_recordset(p_children) AS c(id uuid, type text, input jsonb,
                                              max_attempts integer);
    INSERT INTO outbox (task_id, queue, attempt, kind, available_at)
    SELECT c.id, tf_queue_of(c.type), 1, 'task', now() + make_interval(secs => p_grace_s)
    FROM jsonb_to_recordset(p_children) AS c(id uuid, type text);
    RETURN t.event_seq;
END;
$$;

-- When a child task ends (completed, failed or cancelled, by whatever path: the runner, a
-- claim that finds it exhausted or cancelled, a user's cancel), the same transaction re-queues
-- its waiting parent if it was the last unfinished child: waiting -> queued, and an outbox
-- row whose attempt is one past the parent's attempts, so that tf_claim takes it.
--
-- The parent row is locked first, so two children ending at once are serialised on it; the
-- sibling check is a new statement, hence a new snapshot under READ COMMITTED, so the second
-- one sees the first one's commit and exactly one of them re-queues the parent.
CREATE OR REPLACE FUNCTION tf_child_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p tasks%ROWTYPE;
BEGIN
    SELECT * INTO p FROM tasks WHERE id = NEW.parent_id FOR UPDATE;
    IF NOT FOUND OR p.status <> 'waiting' THEN
        RETURN NULL;  -- cancelled meanwhile, or not an agent's parent
    END IF;
    IF EXISTS (SELECT 1 FROM tasks c WHERE c.parent_id = p.id
               AND c.status NOT IN ('completed', 'failed', 'cancelled')) THEN
        RETURN NULL;
    END IF;
    UPDATE tasks SET status = 'queued', updated_at = now(), event_seq = tasks.event_seq + 1
    WHERE id = p.id;
    INSERT INTO outbox (task_id, queue, attempt, kind)
    VALUES (p.id, tf_queue_of(p.type), p.attempts + 1, 'task');
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_child_finished
    AFTER UPDATE OF status ON tasks
    FOR EACH ROW
    WHEN (NEW.parent_id IS NOT NULL
          AND NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status NOT IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION tf_child_finished();

-- A tool with side effects runs at most once per call (its tool_execution task): the worker
-- records `started` before it runs the tool and the result after. A redelivered copy that
-- finds `succeeded` answers the recorded result; one that finds `started` does not run it
-- again (the first run may have happened: tool_worker.effects).
CREATE TABLE tool_calls (
    task_id     uuid PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    call_id     text NOT NULL,
    tool        text NOT NULL,
    state       text NOT NULL CHECK (state IN ('started', 'succeeded', 'failed')),
    result      jsonb,
    error       jsonb,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- Facts the agent learnt about a user, deduplicated per user by a normalised key. Not tied
-- to the task that found them: retention deletes old tasks, memories stay.
CREATE TABLE memories (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        text NOT NULL,
    fact           text NOT NULL,
    fact_key       text NOT NULL,
    source_task_id uuid,
    -- clock_timestamp(): the facts of one insert keep the order the model gave them in.
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE UNIQUE INDEX memories_user_fact ON memories (user_id, fact_key);
CREATE INDEX memories_user_created ON memories (user_id, created_at DESC, id DESC);

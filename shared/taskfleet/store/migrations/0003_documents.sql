-- Documents, their bytes and their full-text index (DESIGN.md §7, §8; docs/documents.md).

CREATE TABLE documents (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL,
    title       text NOT NULL,
    filename    text,
    media_type  text NOT NULL
                CHECK (media_type IN ('application/pdf', 'text/plain', 'text/markdown')),
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    sha256      text NOT NULL,
    -- Where the bytes are in the blob store (taskfleet.blobs); never in a message.
    blob_key    text NOT NULL,
    -- The task that indexes it. Deliberately no foreign key: retention deletes old terminal
    -- tasks, and a user's indexed document must outlive the task that indexed it (a cascade
    -- would delete the document; a plain reference would block retention).
    task_id     uuid,
    pages       integer CHECK (pages >= 0),
    indexed_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX documents_user_created ON documents (user_id, created_at DESC, id DESC);
CREATE INDEX documents_task ON documents (task_id) WHERE task_id IS NOT NULL;

-- The PostgreSQL blob store: the default, reachable by the API and every worker alike.
CREATE TABLE document_blobs (
    key        text PRIMARY KEY,
    data       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per chunk of a page. The key is what makes a redelivered task unable to duplicate
-- chunks: chunking is deterministic, so a page parsed again yields the same keys and the
-- insert skips them.
CREATE TABLE document_chunks (
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    page        integer NOT NULL CHECK (page >= 1),
    chunk_index integer NOT NULL CHECK (chunk_index >= 0),
    -- The owner again, so that search filters by user before it joins.
    user_id     text NOT NULL,
    content     text NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    PRIMARY KEY (document_id, page, chunk_index)
);

CREATE INDEX document_chunks_tsv ON document_chunks USING gin (tsv);
CREATE INDEX document_chunks_user ON document_chunks (user_id);

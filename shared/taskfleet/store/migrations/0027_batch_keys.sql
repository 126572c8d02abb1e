-- `Idempotency-Key` on POST /api/batches (docs/scheduling.md#batches): the same key, per user,
-- gives the same batch; with another request (its digest), 409. `members` keeps the members'
-- ids in the order they were given, which the answer to a repeat lists them in.
ALTER TABLE batches ADD COLUMN idempotency_key text,
                    ADD COLUMN request_digest text,
                    ADD COLUMN members uuid[];
CREATE UNIQUE INDEX batches_user_key ON batches (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

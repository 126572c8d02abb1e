-- The token deny-list: a revoked token's jti until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    reason     text NOT NULL DEFAULT ''
);

CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);

-- One-time sign-in codes for the console (docs/security.md, "Console sign-in links").
-- A row holds no secret that works on its own: `lookup` is a hash of the code and `sealed`
-- is a token encrypted under a key derived from the code, which only the link holds. The
-- API deletes the row as it redeems it (single use); an expired row is deleted unredeemed.
CREATE TABLE signin_codes (
    lookup     text PRIMARY KEY,
    sealed     bytea NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX signin_codes_expiry ON signin_codes (expires_at);

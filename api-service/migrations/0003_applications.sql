-- Applications hold personal data (name, email, date of birth, essay): never logged, only
-- returned to the principal that created them.
CREATE TABLE applications (
    id             UUID PRIMARY KEY,
    principal      TEXT NOT NULL,
    scholarship_id UUID NOT NULL REFERENCES scholarships (id),
    applicant      JSONB NOT NULL,
    essay          TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'submitted',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX applications_principal ON applications (principal, created_at);

-- Idempotency keys are scoped to the principal. A key is reserved (`in_flight`) in its own
-- committed transaction so concurrent duplicates see it, then completed in the same
-- transaction that writes the application, so a stored response always has its row.
CREATE TABLE idempotency_keys (
    principal      TEXT NOT NULL,
    key            TEXT NOT NULL,
    request_hash   BYTEA NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('in_flight', 'completed')),
    -- A reservation whose owner died is taken over after this instant.
    locked_until   TIMESTAMPTZ NOT NULL,
    response_status SMALLINT,
    response_headers JSONB,
    response_body  BYTEA,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
